"""Late fusion (as the MELD system does): one classifier per input, and the fused prediction is
a weighted average of their class probabilities. Each member is trained on its own loss; the
fusion weights are then fitted on the validation split (never test) by the training loop's
`fit_validation` hook."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from emofuse.config import StrictConfig
from emofuse.evaluation.metrics import classification_metrics
from emofuse.models.base import AttentionPool, EmotionModel, mlp, presence
from emofuse.registry import MODELS


class LateFusionConfig(StrictConfig):
    hidden: int = 128
    dropout: float = 0.3
    weight_step: float = 0.1  # grid step of the validation search over the weight simplex
    fit_metric: str = "weighted_f1"


@MODELS.register("late")
class LateFusion(EmotionModel):
    Config = LateFusionConfig

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: LateFusionConfig):
        super().__init__(in_dims, n_classes, cfg)
        self.norm = nn.ModuleDict({k: nn.LayerNorm(d) for k, d in in_dims.items()})
        self.pool = nn.ModuleDict({k: AttentionPool(d) for k, d in in_dims.items()})
        self.members = nn.ModuleDict({k: mlp(d, cfg.hidden, n_classes, cfg.dropout) for k, d in in_dims.items()})
        # uniform until fitted on validation; a buffer so it is saved with the weights
        self.register_buffer("fusion_weights", torch.full((len(in_dims),), 1.0 / len(in_dims)))

    def member_logits(self, batch: dict) -> torch.Tensor:
        out = []
        for k in self.modalities:
            x = self.norm[k](batch[k])
            if x.dim() == 3:
                x = self.pool[k](x, batch[f"{k}_mask"])
            out.append(self.members[k](x))
        return torch.stack(out, dim=1)  # (B, M, C)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        logits = self.member_logits(batch)  # (B, M, C)
        present = torch.stack([presence(batch, k) for k in self.modalities], 1).float()  # (B, M)
        w = self.fusion_weights.unsqueeze(0) * present
        # a sample with no present input falls back to the plain weights rather than dividing by 0
        w = torch.where(w.sum(1, keepdim=True) > 0, w, self.fusion_weights.unsqueeze(0).expand_as(w))
        w = w / w.sum(1, keepdim=True)  # (B, M)
        probs = torch.einsum("bm,bmc->bc", w, torch.softmax(logits, -1))  # (B, C)
        return {
            "logits": torch.log(probs.clamp_min(1e-8)),
            "weights": w,
            "aux_logits": logits,  # each member also gets its own loss in training
            "aux_mask": present.bool(),  # (B, M): no member loss where its input is absent
        }

    @torch.no_grad()
    def fit_validation(self, batches) -> dict:
        """Grid-search the weight simplex for the best validation score; store the weights."""
        probs, present, labels = [], [], []
        for batch in batches:
            out = self(batch)
            probs.append(torch.softmax(out["aux_logits"], -1).cpu().numpy())
            present.append(out["aux_mask"].float().cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
        member_probs, present, labels = np.concatenate(probs), np.concatenate(present), np.concatenate(labels)
        best_w, best = fit_fusion_weights(member_probs, present, labels, self.n_classes, self.cfg.weight_step,
                                          self.cfg.fit_metric)
        self.fusion_weights.copy_(torch.as_tensor(best_w, dtype=self.fusion_weights.dtype))
        return {"fusion_weights": dict(zip(self.modalities, best_w.tolist())), f"val_{self.cfg.fit_metric}": best}


def fuse_probs(w: np.ndarray, member_probs: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(N, C) weighted average of the (N, M, C) member probabilities with weights (M,) renormalised
    over each sample's present members (all members where none is present)."""
    ww = w[None, :] * present
    ww = np.where(ww.sum(1, keepdims=True) > 0, ww, w[None, :])
    ww = ww / np.clip(ww.sum(1, keepdims=True), 1e-8, None)
    return np.einsum("bm,bmc->bc", ww, member_probs)


def fit_fusion_weights(member_probs: np.ndarray, present: np.ndarray, labels: np.ndarray, n_classes: int,
                       step: float = 0.1, metric: str = "weighted_f1", prior: np.ndarray | None = None,
                       tolerance: float = 0.0) -> tuple[np.ndarray, float]:
    """Grid-search the weight simplex (in `step`s) for the best `metric` of the fused prediction on
    these (validation) samples. Returns (weights (M,), score).

    Without a prior the first best weighting in grid order wins. With a prior (M,), the weighting
    closest to it (L1) among those within `tolerance` of the best score wins: the prior holds unless
    the data show a better weighting by more than the tolerance."""
    m = member_probs.shape[1]
    steps = int(round(1 / step))
    scored = []
    for combo in itertools.product(range(steps + 1), repeat=m):
        if sum(combo) != steps:
            continue
        w = np.array(combo, dtype=np.float64) / steps
        pred = fuse_probs(w, member_probs, present).argmax(1)
        scored.append((classification_metrics(labels, pred, n_classes)[metric], w))
    best = max(s for s, _ in scored)
    if prior is None:
        return next(w for s, w in scored if s > best - 1e-12), best
    prior = np.asarray(prior, dtype=np.float64) / max(float(np.sum(prior)), 1e-12)
    near = [(s, w) for s, w in scored if s >= best - tolerance - 1e-12]
    s, w = min(near, key=lambda sw: (float(np.abs(sw[1] - prior).sum()), -sw[0]))
    return w, s
