"""Ensemble of calibrated members: one classifier per input (e.g. the eGeMAPS, ComParE and MFCC
views of one utterance), each temperature-scaled on the validation split, and the prediction is the
plain average of their calibrated class probabilities.

Unlike late fusion there are no fusion weights to fit: on a validation split of two speakers a
weight search chases noise (issue 12 measured fitted weights below no weights at all), while one
temperature per member only fixes each member's confidence so that an over-confident member does
not outvote the others. An average of calibrated but disagreeing members is under-confident (on
RAVDESS the averaged prediction's validation ECE rose from 0.16 to 0.20, fold mean, with the member
temperatures alone), so one more temperature, on the average, is fitted after them: it never changes
the argmax. Members train on their own cross-entropy (as late fusion's do) plus the loss of the
averaged prediction; the temperatures are fitted afterwards by the training loop's `fit_validation`
hook, with scoring/calibration.py."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import softmax
from torch import nn

from emofuse.config import StrictConfig
from emofuse.scoring.calibration import apply_temperature, expected_calibration_error, fit_temperature
from emofuse.models.base import AttentionPool, EmotionModel, member_logits, mlp, presence
from emofuse.registry import MODELS


class EnsembleConfig(StrictConfig):
    hidden: int = 128
    dropout: float = 0.3
    # inputs whose member is linear (logistic regression on the standardised input) rather than an
    # MLP, e.g. the 6373 ComParE functionals: with a few hundred training clips a hidden layer on
    # them only adds parameters to overfit. Names are input keys ("audio:compare") or encoder names
    # ("compare").
    linear: list[str] = []
    calibrate: bool = True  # temperature per member, then on the average, on validation; False: plain average


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
        # 1 until fitted on validation; buffers so they are saved with the weights
        self.register_buffer("temperatures", torch.ones(len(in_dims)))
        self.register_buffer("fused_temperature", torch.ones(()))

    def _linear(self, key: str) -> bool:
        return key in self.cfg.linear or key.split(":", 1)[-1] in self.cfg.linear

    member_logits = member_logits  # (B, M, C): one member per input (models.base)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        logits = self.member_logits(batch)  # (B, M, C)
        present = torch.stack([presence(batch, k) for k in self.modalities], 1).to(logits.dtype)  # (B, M)
        # a sample with no input present averages all members rather than dividing by 0
        w = torch.where(present.sum(1, keepdim=True) > 0, present, torch.ones_like(present))
        w = w / w.sum(1, keepdim=True)  # (B, M)
        calibrated = torch.softmax(logits / self.temperatures.to(logits.dtype)[None, :, None], -1)  # (B, M, C)
        probs = torch.einsum("bm,bmc->bc", w, calibrated)  # (B, C)
        return {
            # softmax of these: the average, temperature-scaled once more
            "logits": torch.log(probs.clamp_min(1e-8)) / self.fused_temperature.to(logits.dtype),
            "weights": w,
            "aux_logits": logits,  # each member also trains on its own loss, uncalibrated
            "aux_mask": present.bool(),
        }

    @torch.no_grad()
    def fit_validation(self, batches) -> dict:
        """One temperature per member, minimising its NLL on the validation rows where its input is
        present, then one on their average; reports the averaged prediction's expected calibration
        error uncalibrated, with the member temperatures, and with both."""
        if not self.cfg.calibrate:
            return {}
        self.temperatures.fill_(1.0)
        self.fused_temperature.fill_(1.0)
        logits, present, labels = [], [], []
        for batch in batches:
            out = self(batch)
            logits.append(out["aux_logits"].float().cpu().numpy())
            present.append(out["aux_mask"].cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
        member_logits, present, labels = np.concatenate(logits), np.concatenate(present), np.concatenate(labels)
        member_probs = softmax(member_logits, axis=-1)  # (N, M, C)
        temps = [fit_temperature(member_probs[present[:, m], m], labels[present[:, m]])
                 for m in range(len(self.modalities))]
        w = present / np.clip(present.sum(1, keepdims=True), 1, None)  # (N, M)
        before = np.einsum("bm,bmc->bc", w, member_probs)
        # from the logits, as forward does (probabilities below 1e-12 are clipped by calibration's helpers)
        after = np.einsum("bm,bmc->bc", w, softmax(member_logits / np.asarray(temps)[None, :, None], axis=-1))
        fused = fit_temperature(after, labels)
        self.temperatures.copy_(torch.as_tensor(temps, dtype=self.temperatures.dtype))
        self.fused_temperature.fill_(fused)
        return {"temperatures": dict(zip(self.modalities, temps)), "fused_temperature": fused,
                "val_ece_uncalibrated": expected_calibration_error(before, labels),
                "val_ece_members_calibrated": expected_calibration_error(after, labels),
                "val_ece": expected_calibration_error(apply_temperature(after, fused), labels)}
