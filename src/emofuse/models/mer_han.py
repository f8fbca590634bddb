"""MER-HAN: a hybrid-attention network for audio + text emotion recognition.

    audio MFCC-40 frames (B, Ta, 40) -> BiLSTM -> local intra-modal self-attention (+res, LN)
    text tokens from a frozen BERT-family encoder (B, Tt, Dt) -> projection -> self-attention (+res, LN)
    cross-modal attention both ways: audio attends to text, text attends to audio (+res, LN)
    global inter-modal attention pooling over all audio and text positions -> FC classifier

Three switches give the paper's ablations: `local_attention`, `cross_modal`, `global_attention`
(without global attention the two modalities are mean-pooled and concatenated)."""

from __future__ import annotations

import torch
from torch import nn

from emofuse.config import StrictConfig
from emofuse.models.base import AttentionPool, EmotionModel, mlp
from emofuse.registry import MODELS


class MerHanConfig(StrictConfig):
    audio: str = "audio"  # input key of the MFCC frame sequence
    text: str = "text"  # input key of the token sequence
    hidden: int = 128
    heads: int = 4
    dropout: float = 0.2
    local_attention: bool = True
    cross_modal: bool = True
    global_attention: bool = True


class _Block(nn.Module):
    """Multi-head attention with a residual connection and LayerNorm (post-norm, as in the paper)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        # a row with no valid key would softmax over nothing (NaN): let it see position 0 instead
        pad = ~kv_mask
        pad[:, 0] &= kv_mask.any(1)
        out, _ = self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)
        return self.norm(q + out)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).float()
    return (x * m).sum(1) / m.sum(1).clamp(min=1)  # (B, D)


@MODELS.register("mer_han")
class MerHan(EmotionModel):
    Config = MerHanConfig

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: MerHanConfig):
        super().__init__(in_dims, n_classes, cfg)
        for key in (cfg.audio, cfg.text):
            if key not in in_dims:
                raise ValueError(f"mer_han needs input {key!r}; the data has {sorted(in_dims)}")
        self.weight_names = [cfg.audio, cfg.text]
        h = cfg.hidden
        self.audio_lstm = nn.LSTM(in_dims[cfg.audio], h // 2, batch_first=True, bidirectional=True)
        self.text_proj = nn.Sequential(nn.LayerNorm(in_dims[cfg.text]), nn.Linear(in_dims[cfg.text], h))
        self.audio_local = _Block(h, cfg.heads, cfg.dropout) if cfg.local_attention else None
        self.text_local = _Block(h, cfg.heads, cfg.dropout) if cfg.local_attention else None
        self.audio_to_text = _Block(h, cfg.heads, cfg.dropout) if cfg.cross_modal else None
        self.text_to_audio = _Block(h, cfg.heads, cfg.dropout) if cfg.cross_modal else None
        self.global_pool = AttentionPool(h) if cfg.global_attention else None
        self.head = mlp(h if cfg.global_attention else 2 * h, h, n_classes, cfg.dropout)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        c = self.cfg
        a, a_mask = batch[c.audio], batch[f"{c.audio}_mask"]  # (B, Ta, 40), (B, Ta)
        t, t_mask = batch[c.text], batch[f"{c.text}_mask"]  # (B, Tt, Dt), (B, Tt)
        if a.dim() != 3 or t.dim() != 3:
            raise ValueError("mer_han needs frame/token sequences: set data.sequence: true")
        a, _ = self.audio_lstm(a)  # (B, Ta, H)
        t = self.text_proj(t)  # (B, Tt, H)
        if self.audio_local is not None:  # local intra-modal attention
            a = self.audio_local(a, a, a_mask)
            t = self.text_local(t, t, t_mask)
        if self.audio_to_text is not None:  # cross-modal attention, both directions
            a, t = self.audio_to_text(a, t, t_mask), self.text_to_audio(t, a, a_mask)
        if self.global_pool is not None:  # global inter-modal attention over all positions
            seq = torch.cat([a, t], dim=1)  # (B, Ta+Tt, H)
            mask = torch.cat([a_mask, t_mask], dim=1)
            s = self.global_pool.score(seq).squeeze(-1).masked_fill(~mask, torch.finfo(seq.dtype).min)
            w = torch.softmax(s, -1) * mask  # (B, Ta+Tt)
            fused = torch.einsum("bt,bth->bh", w, seq)  # (B, H)
            ta = a.shape[1]
            weights = torch.stack([w[:, :ta].sum(1), w[:, ta:].sum(1)], dim=1)  # (B, 2) audio vs text
        else:
            fused = torch.cat([_masked_mean(a, a_mask), _masked_mean(t, t_mask)], dim=-1)  # (B, 2H)
            weights = None
        out = {"logits": self.head(fused)}
        if weights is not None:
            out["weights"] = weights
        return out
