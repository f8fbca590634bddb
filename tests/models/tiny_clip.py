"""A tiny random CLIP (both towers, hidden 32) saved with a BPE tokenizer and an image processor,
for the zero-shot tests; built offline in a temp folder."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.features.tiny_hf import H, bpe_tokenizer


def build_clip(folder: Path, seed: int = 0) -> Path:
    import transformers as tf

    torch.manual_seed(seed)
    tok = bpe_tokenizer(pad="<pad>")
    text = dict(vocab_size=len(tok), max_position_embeddings=32, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **H)
    vision = dict(image_size=32, patch_size=8, **H)
    model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    proc = tf.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
