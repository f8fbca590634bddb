"""Attention fusion (MERBench style): each modality's utterance vector is projected to a shared
width, a softmax over modalities gives per-sample modality weights (absent modalities masked out),
and the weighted sum is classified."""

from __future__ import annotations

import torch
from torch import nn

from emofuse.config import StrictConfig
from emofuse.models.base import AttentionPool, EmotionModel, masked_scores, mlp, presence
from emofuse.registry import MODELS


class AttentionFusionConfig(StrictConfig):
    hidden: int = 128
    dropout: float = 0.3
    # Randomly hide whole modalities in training so the weights learn to lean on what is reliable.
    modality_dropout: float = 0.1


@MODELS.register("attention")
class AttentionFusion(EmotionModel):
    Config = AttentionFusionConfig

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: AttentionFusionConfig):
        super().__init__(in_dims, n_classes, cfg)
        h = cfg.hidden
        self.proj = nn.ModuleDict(
            {
                m: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, h), nn.ReLU(), nn.Dropout(cfg.dropout))
                for m, d in in_dims.items()
            }
        )
        self.pool = nn.ModuleDict({m: AttentionPool(d) for m, d in in_dims.items()})
        # weights from all modalities jointly, so one modality's evidence can down-weight another's
        self.scorer = nn.Sequential(nn.Linear(h * len(in_dims), h), nn.Tanh(), nn.Linear(h, len(in_dims)))
        self.head = mlp(h, h, n_classes, cfg.dropout)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        hs, present = [], []
        for m in self.modalities:
            x = batch[m]
            if x.dim() == 3:  # (B, T, D) sequence -> (B, D)
                x = self.pool[m](x, batch[f"{m}_mask"])
            hs.append(self.proj[m](x))  # (B, H)
            present.append(presence(batch, m))
        h = torch.stack(hs, dim=1)  # (B, M, H)
        keep = torch.stack(present, dim=1)  # (B, M)
        if self.training and self.cfg.modality_dropout > 0:
            drop = torch.rand_like(keep, dtype=torch.float) < self.cfg.modality_dropout
            dropped = keep & ~drop
            keep = torch.where(dropped.any(1, keepdim=True), dropped, keep)  # never drop all
        h = h * keep.unsqueeze(-1)
        scores = self.scorer(h.flatten(1))  # (B, M)
        scores = masked_scores(scores, keep)
        w = torch.softmax(scores, dim=-1)  # (B, M) per-sample modality weights
        fused = torch.einsum("bm,bmh->bh", w, h)  # (B, H)
        return {"logits": self.head(fused), "weights": w}
