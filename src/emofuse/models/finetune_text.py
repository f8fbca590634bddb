"""A Hugging Face text encoder (BERT, RoBERTa, MiniLM, ... by id or folder) fine-tuned end to end as
a unimodal emotion classifier: tokens -> encoder -> pooled state -> dropout -> linear.

It reads raw text (data.features = {text: raw}); with data.raw.context = K the batch also carries
the K preceding turns of the dialogue, which go first, separated from the utterance by the
tokenizer's separator token, and are truncated from the left (oldest tokens first) so that the
utterance itself always fits. After training, the fine-tuned encoder and its tokenizer are saved in
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
    pooling: Literal["mean", "cls"] = "mean"  # mean: what sentence-transformers models were trained with
    freeze_layers: int = 0  # freeze the embeddings and the first K layers; -1: the whole encoder (a probe)
    dropout: float = 0.1
    gradient_checkpointing: bool = False  # trade compute for memory on long contexts


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
        self.frozen = freeze_first_layers(self.backbone, cfg.freeze_layers)
        if getattr(self.backbone, "pooler", None) is not None:  # BERT's pooler: unused (we pool the states)
            self.backbone.pooler.requires_grad_(False)
        hidden = int(self.backbone.config.hidden_size)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(hidden, n_classes))

    def inputs(self, texts: list[str], contexts: list[list[str]] | None = None) -> dict[str, torch.Tensor]:
        """Token ids for a batch; the context (oldest first) precedes each utterance after a separator."""
        tok = self.tokenizer
        with_context = contexts is not None and any(contexts)
        if with_context:
            sep = f" {tok.sep_token or tok.eos_token or '|'} "
            texts = [(" ".join(c) + sep + t) if c else t for t, c in zip(texts, contexts)]
        # left truncation drops the oldest context first and keeps the utterance at the end
        tok.truncation_side = "left" if with_context else "right"
        enc = tok([str(t) for t in texts], padding=True, truncation=True, max_length=self.cfg.max_length,
                  return_tensors="pt")
        device = next(self.head.parameters()).device
        return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def encode(self, batch: dict) -> torch.Tensor:
        enc = self.inputs(batch["text"], batch.get("text_context"))
        states = self.backbone(**enc).last_hidden_state  # (B, T, D)
        if self.cfg.pooling == "cls":
            return states[:, 0]
        mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, D)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.encode(batch)).float()}  # (B, C)

    def save_artifacts(self, unit_dir: Path) -> None:
        """The fine-tuned encoder + tokenizer, loadable as a feature encoder (hf:<unit_dir>/encoder)."""
        save_encoder(self.backbone, self.tokenizer, Path(unit_dir) / ENCODER_DIR, self.cfg.encoder,
                     {"model": "finetune_text", "pooling": self.cfg.pooling, "max_length": self.cfg.max_length})
