"""Early fusion: concatenate every input's utterance vector (sequences mean-pooled over their
valid frames, absent inputs zeroed) and classify with an MLP."""

from __future__ import annotations

import torch
from torch import nn

from emofuse.config import StrictConfig
from emofuse.models.base import EmotionModel, mlp, presence
from emofuse.registry import MODELS


class EarlyFusionConfig(StrictConfig):
    hidden: int = 128
    dropout: float = 0.3


@MODELS.register("early")
class EarlyFusion(EmotionModel):
    Config = EarlyFusionConfig

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: EarlyFusionConfig):
        super().__init__(in_dims, n_classes, cfg)
        # per-input LayerNorm first: eGeMAPS values are in the hundreds, MiniLM's near unit norm
        self.norm = nn.ModuleDict({k: nn.LayerNorm(d) for k, d in in_dims.items()})
        self.head = mlp(sum(in_dims.values()), cfg.hidden, n_classes, cfg.dropout)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        parts = []
        for k in self.modalities:
            x = batch[k]
            if x.dim() == 3:  # (B, T, D) -> (B, D) mean over valid frames
                m = batch[f"{k}_mask"].unsqueeze(-1)
                x = (x * m).sum(1) / m.sum(1).clamp(min=1)
            parts.append(self.norm[k](x) * presence(batch, k).unsqueeze(-1))  # (B, D_k)
        return {"logits": self.head(torch.cat(parts, dim=-1))}  # (B, C)
