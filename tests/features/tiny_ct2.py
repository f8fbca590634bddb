"""A CTranslate2 WhisperSpec model.bin written at test time from a tiny transformers Whisper: the layout
CTranslate2's converter writes (fused q|k|v and k|v projections, gamma/beta norms, scalar variables,
the output projection as an alias of the embeddings), so the converter is tested without the wheels."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
        np.dtype(np.float16): 4}


def _string(f, s: str) -> None:
    b = s.encode()
    f.write(struct.pack("<H", len(b) + 1) + b + b"\0")


def write_ct2(variables: dict[str, np.ndarray], path: Path, aliases: dict[str, str] | None = None) -> Path:
    with open(path, "wb") as f:
        f.write(struct.pack("<I", 6))
        _string(f, "WhisperSpec")
        f.write(struct.pack("<I", 3))
        f.write(struct.pack("<I", len(variables)))
        for name, v in sorted(variables.items()):
            v = np.asarray(v, order="C")  # not ascontiguousarray: it makes scalars 1-d
            _string(f, name)
            f.write(struct.pack("<B", v.ndim) + b"".join(struct.pack("<I", d) for d in v.shape))
            f.write(struct.pack("<B", _IDS[v.dtype]) + struct.pack("<I", v.nbytes) + v.tobytes())
        f.write(struct.pack("<I", len(aliases or {})))
        for a, t in (aliases or {}).items():
            _string(f, a)
            _string(f, t)
    return path


def ct2_variables(model, dtype=np.float16) -> dict[str, np.ndarray]:
    """The CTranslate2 variables of a WhisperForConditionalGeneration (k bias as zeros, as CTranslate2 fuses it)."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    c = model.config
    d = c.d_model
    out: dict[str, np.ndarray] = {}

    def lin(ct, hf):
        out[f"{ct}/weight"], out[f"{ct}/bias"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def norm(ct, hf):
        out[f"{ct}/gamma"], out[f"{ct}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def fused(ct, hf, parts):
        out[f"{ct}/weight"] = np.concatenate([sd[f"{hf}.{p}_proj.weight"] for p in parts])
        out[f"{ct}/bias"] = np.concatenate([sd.get(f"{hf}.{p}_proj.bias", np.zeros(d, np.float32)) for p in parts])

    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    out["encoder/position_encodings/encodings"] = sd["model.encoder.embed_positions.weight"]
    out["decoder/position_encodings/encodings"] = sd["model.decoder.embed_positions.weight"]
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    for side, n in (("encoder", c.encoder_layers), ("decoder", c.decoder_layers)):
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(n):
            ct, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            fused(f"{ct}/self_attention/linear_0", f"{hf}.self_attn", "qkv")
            lin(f"{ct}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            lin(f"{ct}/ffn/linear_0", f"{hf}.fc1")
            lin(f"{ct}/ffn/linear_1", f"{hf}.fc2")
            norm(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")
            if side == "decoder":
                lin(f"{ct}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                fused(f"{ct}/attention/linear_1", f"{hf}.encoder_attn", "kv")
                lin(f"{ct}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
                norm(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
    out = {k: v.astype(dtype) for k, v in out.items()}
    out["encoder/num_heads"] = np.array(c.encoder_attention_heads, np.int16)
    out["decoder/num_heads"] = np.array(c.decoder_attention_heads, np.int16)
    out["decoder/pre_norm"] = np.array(1, np.int8)
    return out


def tiny_whisper(seed: int = 0, positions: int = 50):
    """A random WhisperForConditionalGeneration: d_model 32, 2+2 layers, 80 mels, `positions` encoder
    states (50: a 1 s window), a 64-token vocabulary."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    cfg = WhisperConfig(vocab_size=64, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                        max_source_positions=positions, max_target_positions=16, pad_token_id=63,
                        bos_token_id=63, eos_token_id=63, decoder_start_token_id=62)
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # fp16-representable weights, so the fp16 model.bin holds them exactly
        for p in model.parameters():
            p.copy_(p.half().float())
    return model
