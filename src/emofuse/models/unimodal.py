"""Unimodal attention baseline (as in MERBench): an MLP on an utterance vector, or attention
pooling / an LSTM over a frame or token sequence followed by the MLP."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from emofuse.config import StrictConfig
from emofuse.models.base import AttentionPool, EmotionModel, mlp
from emofuse.registry import MODELS


class UnimodalConfig(StrictConfig):
    modality: str | None = None  # which input to use; may be omitted when the data has one modality
    hidden: int = 128
    dropout: float = 0.3
    pooling: Literal["attention", "lstm", "mean"] = "attention"  # for sequence inputs only


@MODELS.register("unimodal")
class UnimodalModel(EmotionModel):
    Config = UnimodalConfig

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: UnimodalConfig):
        super().__init__(in_dims, n_classes, cfg)
        if cfg.modality is None:
            if len(in_dims) != 1:
                raise ValueError(f"unimodal model needs `modality`, one of {sorted(in_dims)}")
            cfg = cfg.model_copy(update={"modality": next(iter(in_dims))})
            self.cfg = cfg
        if cfg.modality not in in_dims:
            raise ValueError(f"modality {cfg.modality!r} not in the data; have {sorted(in_dims)}")
        self.modality = cfg.modality
        d = in_dims[cfg.modality]
        self.norm = nn.LayerNorm(d)
        if cfg.pooling == "lstm":
            self.lstm = nn.LSTM(d, cfg.hidden // 2, batch_first=True, bidirectional=True)
            pooled = cfg.hidden
        else:
            self.pool = AttentionPool(d) if cfg.pooling == "attention" else None
            pooled = d
        self.head = mlp(pooled, cfg.hidden, n_classes, cfg.dropout)

    def encode(self, batch: dict) -> torch.Tensor:
        x = self.norm(batch[self.modality])  # (B, D) or (B, T, D)
        if x.dim() == 2:
            return x
        mask = batch[f"{self.modality}_mask"]  # (B, T)
        if self.cfg.pooling == "lstm":
            h, _ = self.lstm(x)  # (B, T, hidden)
            h = h * mask.unsqueeze(-1)
            return h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        if self.pool is not None:
            return self.pool(x, mask)
        return (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.encode(batch))}  # (B, C)
