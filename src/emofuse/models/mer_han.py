"""MER-HAN: a hybrid-attention network for audio + text emotion recognition (IEMOCAP-style).

    audio MFCC-40 frames (B, Ta, 40) -> [stack k frames] -> BiLSTM -> local self-attention (+res, LN)
    text token states of a BERT-family encoder (B, Tt, Dt) -> LN + projection -> self-attention (+res, LN)
    cross-modal attention both ways: audio attends to text, text attends to audio (+res, LN)
    global inter-modal attention pooling over all audio and text positions -> FC classifier

Inputs. Audio: any frame sequence, MFCC-40 (`mfcc`, 10 ms hop) as the paper. Text: the *token states*
of any sequence-giving text encoder, i.e. `minilm` (all-MiniLM-L6-v2's last hidden states, one
384-d vector per word piece, [CLS] and [SEP] included) or any `hf:` BERT-family model; with
`data.sequence: true` the feature cache hands over these per-token states (stored at extraction
beside the pooled vector), not one utterance vector repeated. Both need `data.sequence: true`.

Train it as the paper does: Adam and plain cross-entropy (`train.optimizer: adam`,
`train.mse_weight: 0`; configs/demo_mer_han.yaml).

Ablation switches: `local_attention`, `cross_modal`, `global_attention` (without global attention each
modality is mean-pooled and the pools concatenated), and `inputs: audio|text` for the unimodal
rows: one branch only; there is then nothing to attend across, so the cross-modal block is absent,
and global attention pools that modality's positions alone. configs/demo_mer_han_ablation.yaml
trains all six rows.

`audio_stack: k` concatenates k consecutive frames into one step (T/k, k*40) before the BiLSTM, as
speech models commonly subsample 10 ms frames; every coefficient is kept. A 4 s clip is 400 MFCC
steps: on the paired benchmark (RAVDESS clips of 297-501 frames) k=4 made an epoch 4-5x faster
on CPU, but its validation weighted F1 was lower (43.9 vs 47.8, 3 seeds), so the default is 1. The
BiLSTM reads packed sequences, so its backward direction starts at each clip's last real frame,
not in the padding (a clip's output does not depend on what it is batched with)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from emofuse.config import StrictConfig
from emofuse.models.base import AttentionPool, EmotionModel, masked_scores, mlp
from emofuse.registry import MODELS


class MerHanConfig(StrictConfig):
    audio: str = "audio"  # input key of the MFCC frame sequence
    text: str = "text"  # input key of the token sequence
    inputs: Literal["both", "audio", "text"] = "both"  # audio / text: the unimodal ablation rows
    hidden: int = 128
    heads: int = 4
    dropout: float = 0.2
    audio_stack: int = 1  # consecutive frames concatenated into one BiLSTM step (1: every 10 ms frame)
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
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)  # (B, D)


def stack_frames(x: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D), (B, T) -> (B, ceil(T/k), k*D), (B, ceil(T/k)): k consecutive frames side by side;
    a step is valid when its first frame is (padding is zeros and only ever at the end)."""
    if k == 1:
        return x, mask
    b, t, d = x.shape
    pad = (-t) % k
    if pad:
        x = torch.cat([x, x.new_zeros(b, pad, d)], 1)
        mask = torch.cat([mask, mask.new_zeros(b, pad)], 1)
    return x.reshape(b, -1, k * d), mask[:, ::k]


@MODELS.register("mer_han")
class MerHan(EmotionModel):
    Config = MerHanConfig

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: MerHanConfig):
        super().__init__(in_dims, n_classes, cfg)
        if cfg.audio_stack < 1:
            raise ValueError(f"mer_han: audio_stack must be >= 1, not {cfg.audio_stack}")
        self.use_audio = cfg.inputs in ("both", "audio")
        self.use_text = cfg.inputs in ("both", "text")
        used = [k for k, on in ((cfg.audio, self.use_audio), (cfg.text, self.use_text)) if on]
        for key in used:
            if key not in in_dims:
                hint = "" if cfg.inputs != "both" else " (inputs: audio or text trains one branch alone)"
                raise ValueError(f"mer_han needs input {key!r}; the data has {sorted(in_dims)}{hint}")
        self.weight_names = used
        h, heads, p = cfg.hidden, cfg.heads, cfg.dropout
        self.audio_lstm = self.text_proj = None
        self.audio_local = self.text_local = self.audio_to_text = self.text_to_audio = None
        if self.use_audio:
            self.audio_lstm = nn.LSTM(in_dims[cfg.audio] * cfg.audio_stack, h // 2, batch_first=True, bidirectional=True)
            self.audio_local = _Block(h, heads, p) if cfg.local_attention else None
        if self.use_text:
            self.text_proj = nn.Sequential(nn.LayerNorm(in_dims[cfg.text]), nn.Linear(in_dims[cfg.text], h))
            self.text_local = _Block(h, heads, p) if cfg.local_attention else None
        if cfg.cross_modal and len(used) == 2:  # one modality has nothing to attend across
            self.audio_to_text = _Block(h, heads, p)
            self.text_to_audio = _Block(h, heads, p)
        self.global_pool = AttentionPool(h) if cfg.global_attention else None
        self.head = mlp(h if cfg.global_attention else len(used) * h, h, n_classes, p)

    def _audio(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        a, mask = batch[c.audio], batch[f"{c.audio}_mask"]  # (B, Ta, 40), (B, Ta)
        if a.dim() != 3:
            raise ValueError("mer_han needs frame/token sequences: set data.sequence: true")
        a, mask = stack_frames(a, mask, c.audio_stack)  # (B, Ta/k, k*40)
        lengths = mask.sum(1).clamp(min=1).cpu()  # an absent clip runs over one zero frame, then is masked
        packed = pack_padded_sequence(a, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.audio_lstm(packed)
        a, _ = pad_packed_sequence(out, batch_first=True, total_length=a.shape[1])  # (B, Ta/k, H)
        if self.audio_local is not None:  # local intra-modal attention
            a = self.audio_local(a, a, mask)
        return a, mask

    def _text(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        t, mask = batch[c.text], batch[f"{c.text}_mask"]  # (B, Tt, Dt), (B, Tt)
        if t.dim() != 3:
            raise ValueError("mer_han needs frame/token sequences: set data.sequence: true")
        t = self.text_proj(t)  # (B, Tt, H)
        if self.text_local is not None:
            t = self.text_local(t, t, mask)
        return t, mask

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        parts = []  # (states (B, T_m, H), mask (B, T_m)) per used modality, audio first
        if self.use_audio:
            parts.append(self._audio(batch))
        if self.use_text:
            parts.append(self._text(batch))
        if self.audio_to_text is not None:  # cross-modal attention, both directions
            (a, a_mask), (t, t_mask) = parts
            parts = [(self.audio_to_text(a, t, t_mask), a_mask), (self.text_to_audio(t, a, a_mask), t_mask)]
        weights = None
        if self.global_pool is not None:  # global inter-modal attention over all positions
            seq = torch.cat([x for x, _ in parts], dim=1)  # (B, Ta+Tt, H)
            mask = torch.cat([m for _, m in parts], dim=1)  # (B, Ta+Tt)
            s = masked_scores(self.global_pool.score(seq).squeeze(-1), mask)  # (B, Ta+Tt)
            w = torch.softmax(s, -1) * mask  # (B, Ta+Tt)
            fused = torch.einsum("bt,bth->bh", w, seq)  # (B, H)
            if len(parts) == 2:
                ta = parts[0][0].shape[1]
                weights = torch.stack([w[:, :ta].sum(1), w[:, ta:].sum(1)], dim=1)  # (B, 2) audio vs text
        else:
            fused = torch.cat([_masked_mean(x, m) for x, m in parts], dim=-1)  # (B, M*H)
        out = {"logits": self.head(fused)}
        if weights is not None:
            out["weights"] = weights
        return out
