"""Tiny random checkpoints for the fine-tuning and zero-shot tests, built offline in a temp folder:
a CLIP with both towers (hidden 32) saved with a BPE tokenizer and an image processor, and speech
encoders whose convolutional front end downsamples 320x like the real wav2vec2 (50 frames a second;
tiny_hf's 10x gives 1,600, where attention over a 2 s clip dominates the run time)."""

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


def build_speech(kind: str, folder: Path, seed: int = 0) -> Path:
    """kind: wav2vec2 (group norm, no attention mask, like wav2vec2-base) or hubert (layer norm + mask)."""
    import transformers as tf

    torch.manual_seed(seed)
    mask = kind != "wav2vec2"
    cls = {"wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model), "hubert": (tf.HubertConfig, tf.HubertModel)}[kind]
    cfg = cls[0](conv_dim=(32, 32, 32, 32), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 8, 4, 4),
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                 feat_extract_norm="layer" if mask else "group", do_stable_layer_norm=mask, **H)
    fe = tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                     return_attention_mask=mask)
    folder.mkdir(parents=True, exist_ok=True)
    cls[1](cfg).save_pretrained(folder)
    fe.save_pretrained(folder)
    return folder
