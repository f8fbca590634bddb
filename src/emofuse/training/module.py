"""The one training loop: a LightningModule around any registered model. Models supply only
`forward(batch) -> {"logits", ...}`; the loss, optimiser and metrics live here."""

from __future__ import annotations

import copy
import math

import lightning as L
from lightning.pytorch.utilities import move_data_to_device
import numpy as np
import torch
import torch.nn.functional as F

from emofuse.scoring.metrics import classification_metrics, multilabel_metrics
from emofuse.models.base import EmotionModel


def emotion_loss(logits: torch.Tensor, label: torch.Tensor, target: torch.Tensor, mse_weight: float,
                 class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 sample_weight: torch.Tensor | None = None, ce_target: str = "label") -> torch.Tensor:
    """Cross-entropy on the hard label (per-class weighted when given; label_smoothing: the
    train.ce_label_smoothing of it), or with ce_target "distribution" against the target distribution,
    + mse_weight * MSE between predicted and target distributions.
    sample_weight (B,): each row's weight (pseudo-labelled rows count less), both terms a weighted mean."""
    if ce_target not in ("label", "distribution"):
        raise ValueError(f"ce_target must be label or distribution, not {ce_target!r}")
    want = label if ce_target == "label" else target.to(logits.dtype)  # torch takes a class or a distribution
    if sample_weight is not None:
        return _weighted_loss(logits, want, label, target, mse_weight, class_weights, label_smoothing, sample_weight)
    loss = F.cross_entropy(logits, want, weight=class_weights, label_smoothing=label_smoothing)
    if mse_weight > 0:
        loss = loss + mse_weight * F.mse_loss(torch.softmax(logits, dim=-1), target)
    return loss


def _weighted_loss(logits, want, label, target, mse_weight, class_weights, label_smoothing, w: torch.Tensor) -> torch.Tensor:
    """emotion_loss with a weight per row: cross-entropy normalised as torch's weighted mean is (by
    the rows' class weights; against distributions, as torch's mean is, by the rows), times each row's
    own weight; with every weight 1 it is emotion_loss."""
    w = w.to(logits.dtype if logits.is_floating_point() else torch.float32)
    ce = F.cross_entropy(logits, want, weight=class_weights, label_smoothing=label_smoothing, reduction="none")
    by_class = class_weights[label] if class_weights is not None and want is label else torch.ones_like(w)
    loss = (ce * w).sum() / (by_class * w).sum().clamp(min=1e-12)
    if mse_weight > 0:
        mse = ((torch.softmax(logits, dim=-1) - target) ** 2).mean(-1)  # (B,)
        loss = loss + mse_weight * (mse * w).sum() / w.sum().clamp(min=1e-12)
    return loss


def model_loss(out: dict, batch: dict, mse_weight: float, class_weights: torch.Tensor | None = None,
               label_smoothing: float = 0.0, ce_target: str = "label") -> torch.Tensor:
    """The objective of any model's output: the emotion loss on `logits`, plus, for models whose
    members are trained separately (late fusion), the mean member cross-entropy over present inputs."""
    loss = emotion_loss(out["logits"], batch["label"], batch["target"], mse_weight, class_weights, label_smoothing,
                        batch.get("weight"), ce_target)
    if "aux_logits" in out:
        aux = out["aux_logits"]  # (B, M, C)
        b, m, c = aux.shape
        ce = F.cross_entropy(aux.reshape(b * m, c), batch["label"].repeat_interleave(m), weight=class_weights,
                             reduction="none").view(b, m)
        mask = out.get("aux_mask", torch.ones_like(ce, dtype=torch.bool)).float()
        loss = loss + (ce * mask).sum() / mask.sum().clamp(min=1)
    return loss


def multilabel_loss(out: dict, batch: dict) -> torch.Tensor:
    """Binary cross-entropy per class against the multi-hot target (the non-zero entries of
    `target`); for multi-label tasks (train.multi_label), where the classes are not exclusive."""
    if "aux_logits" in out:
        raise ValueError("multi-label training needs per-class logits; this model averages member "
                         "probabilities (late fusion): use unimodal, early or attention")
    return F.binary_cross_entropy_with_logits(out["logits"], (batch["target"] > 0).to(out["logits"].dtype))


def class_weights(labels: np.ndarray, n_classes: int, kind: str) -> torch.Tensor | None:
    """CE weights from the training labels: 'balanced' = n / (C * count_c) (scikit-learn's), 'sqrt' =
    its square root (a milder push toward rare classes), 'none' = None. An absent class gets 1."""
    if kind == "none":
        return None
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 1.0)
    if kind == "sqrt":
        w = np.sqrt(w)
    elif kind != "balanced":
        raise ValueError(f"class_weights must be none, balanced or sqrt, not {kind!r}")
    return torch.tensor(w, dtype=torch.float32)


def make_optimizer(model: EmotionModel, kind: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (the MER2025 system's) or Adam (MER-HAN's paper; weight_decay is then L2 in the gradient).
    A model may split its trainable parameters into groups with their own learning rates
    (`EmotionModel.param_groups(lr)`, e.g. LoRA adapters apart from a fusion head; by default one
    group); frozen parameters stay out either way."""
    groups = [g for g in model.param_groups(lr) if g["params"]]
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[kind]
    # The fused kernel updates every tensor in one pass: on CPU, a fine-tuned MiniLM's step takes 20 ms
    # instead of 170 ms for the default per-tensor loop (emofuse speed finetune), the same update.
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return cls(groups, lr=lr, weight_decay=weight_decay, fused=fused or None)


def drop_modalities(batch: dict, modalities: list[str], p: float, generator: torch.Generator | None = None) -> dict:
    """A copy of the batch where each sample loses each of its present inputs with probability p
    (mask set to absent, features zeroed), never all of them: a sample keeps its inputs where the
    draw would have dropped every one. Only inputs with a `<name>_mask` take part; with fewer than
    two of them nothing is dropped."""
    names = [m for m in modalities if f"{m}_mask" in batch and torch.is_tensor(batch.get(m))]
    if p <= 0 or len(names) < 2:
        return batch
    b = len(batch["label"])
    device = batch["label"].device
    present = torch.stack([batch[f"{m}_mask"].reshape(b, -1).any(1) for m in names], 1)  # (B, M)
    drop = torch.rand(present.shape, generator=generator).to(device) < p  # (B, M)
    keep = present & ~drop
    keep = torch.where(keep.any(1, keepdim=True), keep, present)  # never drop all of a sample's inputs
    out = dict(batch)
    for j, m in enumerate(names):
        k = keep[:, j]  # (B,)
        mask = batch[f"{m}_mask"]
        out[f"{m}_mask"] = mask & (k if mask.dim() == 1 else k.unsqueeze(1))
        x = batch[m]
        out[m] = x * k.view(b, *([1] * (x.dim() - 1))).to(x.dtype)
    return out


def move_batch(batch, device: torch.device):
    """A dict batch's tensors moved to `device` (non-blocking from pinned memory); its lists of ids and texts
    left alone. Lightning's generic move (move_data_to_device, used for anything else) walks every string of
    them, every step: a tenth of a small model's training time on CPU (emofuse speed train)."""
    if not isinstance(batch, dict):
        return move_data_to_device(batch, device)
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, (list, tuple)) and v and not isinstance(v[0], (str, list, tuple)):
            out[k] = move_data_to_device(v, device)
        else:  # ids, texts, lists of context turns
            out[k] = v
    return out


class EmotionModule(L.LightningModule):
    def __init__(self, model: EmotionModel, lr: float, weight_decay: float, mse_weight: float,
                 class_weights: torch.Tensor | None = None, lr_schedule: str = "constant", warmup: float = 0.0,
                 multi_label: bool = False, optimizer: str = "adamw", modality_dropout: float = 0.0,
                 ce_label_smoothing: float = 0.0, ce_target: str = "label"):
        super().__init__()
        self.ce_label_smoothing, self.ce_target = ce_label_smoothing, ce_target
        self.modality_dropout = modality_dropout  # train.modality_dropout: training batches only
        self.optimizer = optimizer
        self.model = model
        self.multi_label = multi_label
        self.lr, self.weight_decay, self.mse_weight = lr, weight_decay, mse_weight
        self.lr_schedule, self.warmup = lr_schedule, warmup
        self.register_buffer("class_weights", class_weights)  # moves to the device with the module
        self._val: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._train_sum, self._train_n = 0.0, 0
        self.epoch_train_loss: float | None = None  # mean training loss of the epoch just validated

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.model(batch)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return move_batch(batch, device)  # a dict batch's tensors only

    def on_train_epoch_start(self) -> None:
        self._train_sum, self._train_n = 0.0, 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.modality_dropout > 0:
            batch = drop_modalities(batch, self.model.modalities, self.modality_dropout)
        out = self.model(batch)
        loss = self._loss(out, batch)
        # sync_dist: the epoch mean over every process's batches (once per epoch, at its end)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["label"]), sync_dist=True)
        # Lightning aggregates train_loss only after the epoch's validation has run; BestWeights
        # records the losses at validation time, so keep the running mean here.
        self._train_sum += float(loss.detach()) * len(batch["label"])
        self._train_n += len(batch["label"])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.model(batch)
        loss = self._loss(out, batch)
        if self.multi_label:  # (B, C) indicators; sigmoid > 0.5 until run.py fits the threshold on val
            truth, guess = (batch["target"] > 0).cpu().numpy(), (out["logits"] > 0).cpu().numpy()
        else:
            truth, guess = batch["label"].cpu().numpy(), out["logits"].argmax(-1).cpu().numpy()
        self._val.append((truth, guess, float(loss) * len(batch["label"])))

    def _loss(self, out: dict, batch: dict) -> torch.Tensor:
        if self.multi_label:
            return multilabel_loss(out, batch)
        return model_loss(out, batch, self.mse_weight, self.class_weights, self.ce_label_smoothing, self.ce_target)

    def on_validation_epoch_end(self) -> None:
        parts, train = self._val, (self._train_sum, self._train_n)
        self._val = []
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            # Distributed: each process scored its own share of the validation rows (run.py gives each
            # a share without repeats), so the metrics are computed on all of them, and are the same on
            # every process: early stopping and BestWeights then decide alike everywhere. Gathered before
            # any early return: a process left without rows must still take part.
            shares = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(shares, (parts, train))
            parts = [v for share, _ in shares for v in share]
            train = (sum(t[0] for _, t in shares), sum(t[1] for _, t in shares))
        if not parts:
            return
        y = np.concatenate([v[0] for v in parts])
        p = np.concatenate([v[1] for v in parts])
        loss = sum(v[2] for v in parts) / len(y)
        m = multilabel_metrics(y, p) if self.multi_label else classification_metrics(y, p, self.model.n_classes)
        # already the same on every process: no sync_dist (its mean would only repeat them)
        self.log_dict({f"val_{k}": v for k, v in m.items()} | {"val_loss": loss}, prog_bar=False)
        self.epoch_train_loss = train[0] / train[1] if train[1] else None

    def configure_optimizers(self):
        opt = make_optimizer(self.model, self.optimizer, self.lr, self.weight_decay)
        if self.lr_schedule == "constant" and self.warmup <= 0:
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = int(self.warmup * total)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            left = max(0.0, (total - step) / max(1, total - warm))  # 1 -> 0 after the warm-up
            if self.lr_schedule == "linear":
                return left
            if self.lr_schedule == "cosine":
                return 0.5 * (1.0 - math.cos(math.pi * left))
            return 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class WeightAverage(L.Callback):
    """train.swa_epochs (stochastic weight averaging, Izmailov et al. 2018): the running mean of the model's
    weights at the end of each of the fit's last `epochs` epochs (torch's AveragedModel). `apply` puts the
    mean in the model and recomputes its batch-norm statistics over the training batches; the run then
    keeps those weights instead of its best epoch's. Not Lightning's StochasticWeightAveraging: that one
    swaps the lr schedule for its own and updates batch norm in an extra epoch of the fit, which the early
    stopping and BestWeights would see as a training epoch."""

    def __init__(self, epochs: int, max_epochs: int):
        if epochs > max_epochs:
            raise ValueError(f"train.swa_epochs ({epochs}) is more than train.max_epochs ({max_epochs})")
        self.start = max_epochs - epochs
        self.avg: torch.optim.swa_utils.AveragedModel | None = None
        self.averaged = 0  # epochs in the mean

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch < self.start:
            return
        if self.avg is None:
            self.avg = torch.optim.swa_utils.AveragedModel(module.model)
        self.avg.update_parameters(module.model)
        self.averaged += 1

    def apply(self, model: torch.nn.Module, train_loader, device: torch.device | str | None = None) -> int:
        """Load the mean into `model` (on the CPU, where the fit leaves it) and recompute its batch-norm
        statistics over the training batches, on `device` (the fit's: a GPU's forward pass instead of the
        CPU's) when given; the model is left on the CPU, in eval mode. Returns the number of epochs averaged
        (0: the fit stopped early, nothing done)."""
        if self.avg is None:
            return 0
        model.load_state_dict({k: v.cpu() for k, v in self.avg.module.state_dict().items()})
        device = torch.device(device or "cpu")
        # torch's update_bn moves only a tensor batch: the loop's dict batches are moved as the fit moves them
        torch.optim.swa_utils.update_bn((move_batch(b, device) for b in train_loader), model.to(device))
        model.cpu().eval()
        return self.averaged


class BestWeights(L.Callback):
    """Keeps the best weights in memory by the monitored validation metric (Lightning's
    ModelCheckpoint would pickle a .ckpt per improvement; we save safetensors once at the end).
    Distributed: the monitored metric is computed on the whole validation split on every process
    (EmotionModule gathers it), so every process keeps the same epoch; process 0 holds its weights."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_epoch = -1
        self.best_step = -1  # optimiser steps done when the best weights were taken
        self.checks = 0  # validation checks seen (more than epochs with train.val_checks_per_epoch)
        self.state: dict | None = None
        self.record: dict = {}
        self.history: list[dict] = []  # one row per validation check: the learning curve (history.csv)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        v = trainer.callback_metrics.get(self.monitor)
        if v is None:
            return
        v = float(v)
        self.checks += 1
        # what the sweep tables report for the kept weights: the validation metrics and the train loss
        scores = {k: float(x) for k, x in trainer.callback_metrics.items() if k.startswith("val_")}
        scores["train_loss"] = module.epoch_train_loss
        self.history.append({"epoch": trainer.current_epoch + 1, "step": trainer.global_step} | scores)
        better = self.best is None or (v > self.best if self.mode == "max" else v < self.best)
        if better:
            self.best, self.best_epoch, self.best_step = v, trainer.current_epoch, trainer.global_step
            # The strategy's state dict, not the module's: under ddp the same weights on every process,
            # under fsdp the shards gathered to process 0 (a collective: every process gets here, as
            # the gathered metrics make `better` the same everywhere). Keys "model.*" are the model's.
            state = trainer.strategy.lightning_module_state_dict()
            self.state = {k.removeprefix("model."): copy.deepcopy(v) for k, v in state.items() if k.startswith("model.")}
            self.record = scores
