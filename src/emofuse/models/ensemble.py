"""Ensemble of calibrated members: one classifier per input (e.g. the eGeMAPS, ComParE and MFCC
views of one utterance), each temperature-scaled on the validation split, and the prediction is the
plain average of their calibrated class probabilities.

Unlike late fusion there are no fusion weights to fit: on a validation split of two speakers a
weight search chases noise (issue 12 measured fitted weights below no weights at all), while one
temperature per member only fixes each member's confidence so that an over-confident member does
not outvote the others. Members train on their own cross-entropy (as late fusion's do) plus the
loss of the averaged prediction; the temperatures are fitted afterwards by the training loop's
`fit_validation` hook, with evaluation/calibration.py."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from emofuse.config import StrictConfig
from emofuse.evaluation.calibration import apply_temperature, expected_calibration_error, fit_temperature
from emofuse.models.base import AttentionPool, EmotionModel, mlp, presence
from emofuse.registry import MODELS


class EnsembleConfig(StrictConfig):
    hidden: int = 128
    dropout: float = 0.3
    # inputs whose member is linear (logistic regression on the standardised input) rather than an
    # MLP, e.g. the 6373 ComParE functionals: with a few hundred training clips a hidden layer on
    # them only adds parameters to overfit. Names are input keys ("audio:compare") or encoder names
    # ("compare").
    linear: list[str] = []
    calibrate: bool = True  # temperature per member on validation; False: plain average


@MODELS.register("ensemble")
class Ensemble(EmotionModel):
    Config = EnsembleConfig

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: EnsembleConfig):
        super().__init__(in_dims, n_classes, cfg)
        known = set(in_dims) | {k.split(":", 1)[-1] for k in in_dims}
        unknown = sorted(set(cfg.linear) - known)
        if unknown:
            raise ValueError(f"ensemble: linear names {unknown} are not inputs; inputs: {sorted(in_dims)}")
        self.norm = nn.ModuleDict({k: nn.LayerNorm(d) for k, d in in_dims.items()})
        self.pool = nn.ModuleDict({k: AttentionPool(d) for k, d in in_dims.items()})
        self.members = nn.ModuleDict({
            k: nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d, n_classes)) if self._linear(k)
            else mlp(d, cfg.hidden, n_classes, cfg.dropout)
            for k, d in in_dims.items()
        })
        # 1 until fitted on validation; a buffer so it is saved with the weights
        self.register_buffer("temperatures", torch.ones(len(in_dims)))

    def _linear(self, key: str) -> bool:
        return key in self.cfg.linear or key.split(":", 1)[-1] in self.cfg.linear

    def member_logits(self, batch: dict) -> torch.Tensor:
        out = []
        for k in self.modalities:
            x = self.norm[k](batch[k])  # (B, D) or (B, T, D)
            if x.dim() == 3:
                x = self.pool[k](x, batch[f"{k}_mask"])
            out.append(self.members[k](x))
        return torch.stack(out, dim=1)  # (B, M, C)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        logits = self.member_logits(batch)  # (B, M, C)
        present = torch.stack([presence(batch, k) for k in self.modalities], 1).to(logits.dtype)  # (B, M)
        # a sample with no input present averages all members rather than dividing by 0
        w = torch.where(present.sum(1, keepdim=True) > 0, present, torch.ones_like(present))
        w = w / w.sum(1, keepdim=True)  # (B, M)
        calibrated = torch.softmax(logits / self.temperatures.to(logits.dtype)[None, :, None], -1)  # (B, M, C)
        probs = torch.einsum("bm,bmc->bc", w, calibrated)  # (B, C)
        return {
            "logits": torch.log(probs.clamp_min(1e-8)),
            "weights": w,
            "aux_logits": logits,  # each member also trains on its own loss, uncalibrated
            "aux_mask": present.bool(),
        }

    @torch.no_grad()
    def fit_validation(self, batches) -> dict:
        """One temperature per member, minimising its NLL on the validation rows where its input is
        present; reports the averaged prediction's expected calibration error before and after."""
        if not self.cfg.calibrate:
            return {}
        self.temperatures.fill_(1.0)
        probs, present, labels = [], [], []
        for batch in batches:
            out = self(batch)
            probs.append(torch.softmax(out["aux_logits"].float(), -1).cpu().numpy())
            present.append(out["aux_mask"].cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
        member_probs, present, labels = np.concatenate(probs), np.concatenate(present), np.concatenate(labels)
        temps = [fit_temperature(member_probs[present[:, m], m], labels[present[:, m]])
                 for m in range(len(self.modalities))]
        w = present / np.clip(present.sum(1, keepdims=True), 1, None)
        before = np.einsum("bm,bmc->bc", w, member_probs)
        after = np.einsum("bm,bmc->bc", w, np.stack(
            [apply_temperature(member_probs[:, m], t) for m, t in enumerate(temps)], 1))
        self.temperatures.copy_(torch.as_tensor(temps, dtype=self.temperatures.dtype))
        return {"temperatures": dict(zip(self.modalities, temps)),
                "val_ece_uncalibrated": expected_calibration_error(before, labels),
                "val_ece": expected_calibration_error(after, labels)}
