"""A Hugging Face text encoder (BERT, RoBERTa, MiniLM, ... by id or folder) fine-tuned end to end as
a unimodal emotion classifier: tokens -> encoder -> pooled state -> dropout -> linear.

It reads raw text (data.features = {text: raw}); with data.raw.context = K (and context_after = J)
the batch also carries the K preceding (J following) turns of the dialogue, as EmoBERTa reads them:
past [SEP] utterance [SEP] future, each turn "Speaker: text". The context is truncated first
(oldest past and farthest future tokens) so that the utterance itself always fits. Texts are
tokenised once and batches are padded to their longest row only. After training, the fine-tuned encoder and its tokenizer are saved in
the run (RUN/encoder), where `hf:RUN/encoder` or `finetuned:RUN` use it as a feature encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from emofuse.config import StrictConfig
from emofuse.models.base import EmotionModel
from emofuse.models.hf_backbone import ENCODER_DIR, freeze_first_layers, hf_folder, quiet_from_pretrained, save_encoder
from emofuse.registry import MODELS


class FinetuneTextConfig(StrictConfig):
    encoder: str = "minilm"  # built-in name (minilm), hf:<id-or-folder>, a folder, or finetuned:RUN
    max_length: int = 128  # tokens per input (MELD utterances average ~15; context needs more)
    # mean: what sentence-transformers models were trained with; utterance: the mean over the
    # utterance's own tokens only (its context is attended to but not averaged in, so a long context
    # does not dilute the utterance); cls: the first token's state
    pooling: Literal["mean", "cls", "utterance"] = "mean"
    freeze_layers: int = 0  # freeze the embeddings and the first K layers; -1: the whole encoder (a probe)
    # keep the token embedding table as it came (most of a small encoder's weights: MiniLM-L6's 11.7M of
    # 22.7M), so that the run differs from its encoder only in the layers (what emofuse-base ships)
    freeze_input_embeddings: bool = False
    dropout: float = 0.1
    gradient_checkpointing: bool = False  # trade compute for memory on long contexts


def special_tokens(tok) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after one text ([CLS] / [SEP], <s> / </s>, ...), read off
    its own output (transformers 5 tokenizers no longer expose build_inputs_with_special_tokens)."""
    bare = tok("emotion", add_special_tokens=False)["input_ids"]
    full = tok("emotion")["input_ids"]
    k = next((i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare), None)
    if k is None:
        raise ValueError(f"cannot locate the text among {type(tok).__name__}'s special tokens")
    return full[:k], full[k + len(bare):]


@MODELS.register("finetune_text")
class FinetuneText(EmotionModel):
    Config = FinetuneTextConfig
    raw_inputs = True  # the loop gives raw text (data/raw.py), not cached features

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: FinetuneTextConfig):
        super().__init__(in_dims, n_classes, cfg)
        from transformers import AutoModel, AutoTokenizer

        if list(in_dims) != ["text"]:
            raise ValueError(f"finetune_text reads text only: set data.features to {{text: raw}}, not {sorted(in_dims)}")
        self.folder = hf_folder(cfg.encoder)
        self.backbone = quiet_from_pretrained(AutoModel, self.folder)
        if cfg.gradient_checkpointing:
            self.backbone.gradient_checkpointing_enable()
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        if self.tokenizer.pad_token is None:  # decoder-style tokenizers ship without one; pads are masked
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self._token_cache: dict[str, list[int]] = {}
        self._prefix, self._suffix = special_tokens(self.tokenizer)
        self.frozen = freeze_first_layers(self.backbone, cfg.freeze_layers)
        if cfg.freeze_input_embeddings:
            table = self.backbone.get_input_embeddings().weight
            if table.requires_grad:
                table.requires_grad_(False)
                self.frozen += table.numel()
        if getattr(self.backbone, "pooler", None) is not None:  # BERT's pooler: unused (we pool the states)
            self.backbone.pooler.requires_grad_(False)
        hidden = int(self.backbone.config.hidden_size)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(hidden, n_classes))

    def _ids(self, text: str) -> list[int]:
        """Token ids of one turn (no special tokens), tokenised once: every utterance is seen again
        each epoch and as a neighbour's context, so the ids are kept (a few MB for MELD)."""
        ids = self._token_cache.get(text)
        if ids is None:
            ids = self._token_cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _sequence(self, text: str, before: list[str], after: list[str]) -> tuple[list[int], int, int]:
        """[CLS] past [SEP] utterance [SEP] future [SEP] within max_length. The utterance is never cut
        (unless it alone is too long: then its end goes); the context shares what is left, the past
        losing its oldest tokens and the future its farthest, half each, a side that needs less
        leaving the rest to the other (EmoBERTa's input, truncated the way it truncates)."""
        tok = self.tokenizer
        sep = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        past = [i for t in before for i in self._ids(t)]
        future = [i for t in after for i in self._ids(t)]
        seps = int(bool(past)) + int(bool(future))
        budget = self.cfg.max_length - len(self._prefix) - len(self._suffix) - (seps if sep is not None else 0)
        cur = self._ids(text)[: max(1, budget)]
        room = max(0, budget - len(cur))
        n_past = min(len(past), max(room // 2, room - len(future)))
        n_future = min(len(future), room - n_past)
        content = list(cur)
        if past:
            content = past[len(past) - n_past:] + ([sep] if sep is not None else []) + content
        start = len(self._prefix) + len(content) - len(cur)
        if future:
            content = content + ([sep] if sep is not None else []) + future[:n_future]
        return self._prefix + content + self._suffix, start, start + len(cur)  # ids, the utterance's span

    def inputs(self, texts: list[str], contexts: list[list[str]] | None = None,
               after: list[list[str]] | None = None) -> dict[str, torch.Tensor]:
        """Token ids for a batch, padded to its longest row (not to max_length): the preceding turns
        (oldest first), the utterance, the following turns (nearest first), separated by the
        tokenizer's separator."""
        n = len(texts)
        contexts = contexts if contexts is not None else [[] for _ in range(n)]
        after = after if after is not None else [[] for _ in range(n)]
        rows = [self._sequence(str(t), list(c), list(a)) for t, c, a in zip(texts, contexts, after)]
        enc = self.tokenizer.pad({"input_ids": [r[0] for r in rows]}, padding=True, return_tensors="pt")
        span = torch.zeros_like(enc["attention_mask"])  # (B, T) 1 on the utterance's own tokens
        for i, (_, a, b) in enumerate(rows):
            span[i, a:b] = 1
        device = next(self.head.parameters()).device
        out = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        out["utterance_mask"] = span.to(device)
        return out

    def encode(self, batch: dict) -> torch.Tensor:
        enc = self.inputs(batch["text"], batch.get("text_context"), batch.get("text_after"))
        utterance = enc.pop("utterance_mask")  # (B, T)
        states = self.backbone(**enc).last_hidden_state  # (B, T, D)
        if self.cfg.pooling == "cls":
            return states[:, 0]
        pool = utterance if self.cfg.pooling == "utterance" else enc["attention_mask"]
        mask = pool.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, D)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.encode(batch)).float()}  # (B, C)

    def input_lengths(self, ds) -> list[int] | None:
        """Tokens per row, as this model cuts it (context included): grouped by characters, MELD's
        batches pad to 26 % more tokens (emofuse speed finetune). None where the data groups none."""
        if ds.lengths() is None:
            return None
        return [len(self._sequence(str(t), list(c), list(a))[0]) for t, c, a in ds.text_rows()]

    def save_artifacts(self, unit_dir: Path, classes: list[str] | None = None) -> None:
        """The fine-tuned encoder + tokenizer, loadable as a feature encoder (hf:<unit_dir>/encoder)."""
        save_encoder(self.backbone, self.tokenizer, Path(unit_dir) / ENCODER_DIR, self.cfg.encoder,
                     {"model": "finetune_text", "pooling": self.cfg.pooling, "max_length": self.cfg.max_length})
