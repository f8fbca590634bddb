"""Every registered model takes one forward and backward pass under mixed precision, on CPU.

On a GPU Lightning's default precision here is bf16-mixed; a constant of the wrong dtype (e.g.
`masked_fill` of a bf16 score with fp32's minimum) then raises "value cannot be converted to type
c10::BFloat16 without overflow" at the first step. CPU autocast reproduces that class of error:
fp16 with oneDNN off (oneDNN's LSTM has no fp16 kernel, and with it on the LSTM would run in fp32
and hide the dtype mix), and bf16. A model registered without a case here fails the test, so a new
model cannot skip it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emofuse.data.dataset import collate
from emofuse.data.raw import collate_raw
from emofuse.registry import MODELS
from emofuse.training.module import model_loss
from emofuse.models.build import build_model
from tests.features.tiny_hf import build
from tests.models.tiny_media import build_clip, build_speech

C = 6
DIMS = {"audio": 12, "text": 16, "video": 8}
TINY_LLM = {"backbone": "tiny", "tiny_hidden": 32, "tiny_layers": 2, "tiny_heads": 4, "hidden": 32, "lora_r": 4}


def _feature_batch(dims: dict[str, int], seq: set[str], n: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        it = {"id": f"s{i}", "label": i % C, "target": np.eye(C, dtype=np.float32)[i % C]}
        for k, d in dims.items():
            it[k] = (rng.normal(size=(int(rng.integers(2, 9)), d)) if k in seq else rng.normal(size=d)).astype(np.float32)
            it[f"{k}_present"] = not (i == 0 and k.startswith("video"))  # sample 0 lacks video: masks are used
        items.append(it)
    return collate(items)


def _features(name: str, params: dict, dims: dict[str, int], seq: tuple[str, ...] = ()):
    def make(tmp):
        return build_model(name, params, dims, C), _feature_batch(dims, set(seq))
    return make


def _prompt(params: dict):
    """llama_topn with readout "prompt": a tiny Llama with its own tokenizer, saved and loaded by path."""
    def make(tmp):
        from tests.models.test_llama_topn import prompt_llm

        dims = {"audio:egemaps": 12, "audio:mfcc": 10, "text": 16, "video": 8}
        folder = prompt_llm(tmp / "llm")
        model = build_model("llama_topn", {"backbone": str(folder), "readout": "prompt", "label_set": "mer6",
                                           "lora_r": 4} | params, dims, C)
        batch = _feature_batch(dims, set())
        batch["transcript"] = ["I am so happy today", "", "she was sad", "what a surprise"]
        return model, batch
    return make


def _raw_text(tmp):
    folder = build("bert", tmp / "bert")
    items = [{"id": f"s{i}", "label": i % C, "target": np.eye(C, dtype=np.float32)[i % C],
              "text": f"what a day {i}", "text_context": [], "text_present": True} for i in range(3)]
    return build_model("finetune_text", {"encoder": f"hf:{folder}", "max_length": 16}, {"text": 0}, C), collate_raw(items)


def _raw_audio(tmp):
    folder = build_speech("wav2vec2", tmp / "w2v")
    rng = np.random.default_rng(0)
    items = [{"id": f"s{i}", "label": i, "target": np.eye(C, dtype=np.float32)[i],
              "audio": rng.normal(size=n).astype(np.float32) * 0.1, "audio_present": n > 0}
             for i, n in enumerate([6000, 3000, 0])]
    return build_model("finetune_audio", {"encoder": f"hf:{folder}"}, {"audio": 0}, C), collate_raw(items)


def _raw_video(tmp):
    folder = build_clip(tmp / "clip")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(2, 40, 40, 3), dtype=np.uint8)
    items = [{"id": f"s{i}", "label": 0, "target": np.eye(C, dtype=np.float32)[0], "video": frames,
              "video_face": np.array([True, i == 0]), "video_present": True} for i in range(2)]
    model = build_model("clip_zeroshot", {"model": f"hf:{folder}", "label_set": "mer6"}, {"video": 0}, C)
    return model, collate_raw(items)


def _raw_faces(tmp):
    rng = np.random.default_rng(0)
    items = [{"id": f"s{i}", "label": i, "target": np.eye(C, dtype=np.float32)[i],
              "video": rng.integers(0, 255, size=(k, 48, 48, 3), dtype=np.uint8), "video_face": np.ones(k, bool),
              "video_present": k > 0} for i, k in enumerate([1, 3, 0])]  # one face, three frames, none
    return build_model("finetune_face", {"width": 8, "blocks": 3}, {"video": 0}, C), collate_raw(items)


CASES = {
    "unimodal": [_features("unimodal", {"modality": "audio", "hidden": 32}, {"audio": 12}, ("audio",))],
    "early": [_features("early", {"hidden": 32}, DIMS)],
    "late": [_features("late", {"hidden": 32}, DIMS, ("audio",))],
    "attention": [_features("attention", {"hidden": 32}, DIMS, ("audio", "text"))],
    "mer_han": [_features("mer_han", {"hidden": 32, "heads": 2}, {"audio": 40, "text": 16}, ("audio", "text"))],
    "llama_topn": [
        _features("llama_topn", TINY_LLM | {"readout": r, "top_n": 1},
                  {"audio:egemaps": 12, "audio:mfcc": 10, "text": 16, "video": 8}, ("audio:mfcc",))
        for r in ("mean", "query", "query+skip", "skip")
    ] + [_features("llama_topn", TINY_LLM | {"segments": {"video": 2}, "backbone_dtype": "bfloat16"},
                   {"audio": 12, "video": 8}, ("video",))] + [
        _prompt(p) for p in ({}, {"prompt_words": False}, {"prompt_soft": False}, {"zero_shot": True},
                             {"backbone_dtype": "bfloat16"})
    ],
    "finetune_text": [_raw_text],
    "finetune_audio": [_raw_audio],
    "clip_zeroshot": [_raw_video],
    "finetune_face": [_raw_faces],
    "experts": [_features("experts", {"experts": {"audio": [{"input": "audio"}], "text": [{"input": "text"}]}},
                          {"audio": 12, "text": 16})],
    "ensemble": [_features("ensemble", {"hidden": 32, "linear": ["text"]}, DIMS, ("audio",))],
}
PARAMS = [pytest.param(name, i, id=f"{name}-{i}") for name, makers in CASES.items() for i in range(len(makers))]


def test_every_registered_model_has_a_case():
    assert sorted(MODELS.names()) == sorted(CASES)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name,i", PARAMS)
def test_forward_and_backward_under_cpu_autocast(name, i, dtype, tmp_path):
    torch.manual_seed(0)
    model, batch = CASES[name][i](tmp_path)
    model.train()
    with torch.backends.mkldnn.flags(enabled=False), torch.autocast("cpu", dtype=dtype):
        out = model(batch)
        loss = model_loss(out, batch, mse_weight=1.0)
    assert out["logits"].shape == (len(batch["label"]), C)
    assert torch.isfinite(out["logits"].float()).all() and torch.isfinite(loss)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:  # zero-shot: nothing to train, the forward pass is what runs
        return
    loss.backward()
    grads = [p.grad for p in trainable if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
