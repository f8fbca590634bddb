"""The one training loop: a LightningModule around any registered model. Models supply only
`forward(batch) -> {"logits", ...}`; the loss, optimiser and metrics live here."""

from __future__ import annotations

import copy

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from emofuse.evaluation.metrics import classification_metrics
from emofuse.models.base import EmotionModel


def emotion_loss(logits: torch.Tensor, label: torch.Tensor, target: torch.Tensor, mse_weight: float) -> torch.Tensor:
    """Cross-entropy on the hard label + mse_weight * MSE between predicted and target distributions."""
    loss = F.cross_entropy(logits, label)
    if mse_weight > 0:
        loss = loss + mse_weight * F.mse_loss(torch.softmax(logits, dim=-1), target)
    return loss


def model_loss(out: dict, batch: dict, mse_weight: float) -> torch.Tensor:
    """The objective of any model's output: the emotion loss on `logits`, plus, for models whose
    members are trained separately (late fusion), the mean member cross-entropy over present inputs."""
    loss = emotion_loss(out["logits"], batch["label"], batch["target"], mse_weight)
    if "aux_logits" in out:
        aux = out["aux_logits"]  # (B, M, C)
        b, m, c = aux.shape
        ce = F.cross_entropy(aux.reshape(b * m, c), batch["label"].repeat_interleave(m), reduction="none").view(b, m)
        mask = out.get("aux_mask", torch.ones_like(ce, dtype=torch.bool)).float()
        loss = loss + (ce * mask).sum() / mask.sum().clamp(min=1)
    return loss


class EmotionModule(L.LightningModule):
    def __init__(self, model: EmotionModel, lr: float, weight_decay: float, mse_weight: float):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.mse_weight = lr, weight_decay, mse_weight
        self._val: list[tuple[np.ndarray, np.ndarray, float]] = []

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.model(batch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.model(batch)
        loss = model_loss(out, batch, self.mse_weight)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.model(batch)
        loss = model_loss(out, batch, self.mse_weight)
        self._val.append((batch["label"].cpu().numpy(), out["logits"].argmax(-1).cpu().numpy(), float(loss) * len(batch["label"])))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        y = np.concatenate([v[0] for v in self._val])
        p = np.concatenate([v[1] for v in self._val])
        loss = sum(v[2] for v in self._val) / len(y)
        self._val.clear()
        m = classification_metrics(y, p, self.model.n_classes)
        self.log_dict({f"val_{k}": v for k, v in m.items()} | {"val_loss": loss}, prog_bar=False)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class BestWeights(L.Callback):
    """Keeps the best weights in memory by the monitored validation metric (Lightning's
    ModelCheckpoint would pickle a .ckpt per improvement; we save safetensors once at the end)."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_epoch = -1
        self.state: dict | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        v = trainer.callback_metrics.get(self.monitor)
        if v is None:
            return
        v = float(v)
        better = self.best is None or (v > self.best if self.mode == "max" else v < self.best)
        if better:
            self.best, self.best_epoch = v, trainer.current_epoch
            self.state = copy.deepcopy(module.model.state_dict())
