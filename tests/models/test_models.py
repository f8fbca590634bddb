"""Tiny-config tests: every registered model builds with hidden 32, gives (B, C) logits, and
gradients reach every trainable parameter; masks for absent modalities are honoured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emofuse.config import ConfigError
from emofuse.data.dataset import collate
from emofuse.registry import MODELS, UnknownNameError
from emofuse.training.module import emotion_loss
from emofuse.training.run import build_model

DIMS = {"audio": 12, "text": 16, "video": 8}
C = 6


def _items(n: int, seq: bool, rng: np.random.Generator) -> list[dict]:
    items = []
    for i in range(n):
        it = {"id": f"s{i}", "label": int(rng.integers(C)), "target": np.eye(C, dtype=np.float32)[i % C]}
        for m, d in DIMS.items():
            t = int(rng.integers(1, 7))
            it[m] = rng.normal(size=(t, d) if seq else d).astype(np.float32)
            it[f"{m}_present"] = not (m == "video" and i == 0)  # sample 0 has no video
        items.append(it)
    return items


@pytest.mark.parametrize("seq", [False, True])
def test_collate_masks(seq):
    batch = collate(_items(5, seq, np.random.default_rng(0)))
    assert batch["label"].shape == (5,) and batch["target"].shape == (5, C)
    if seq:
        assert batch["audio"].dim() == 3 and batch["audio_mask"].shape == batch["audio"].shape[:2]
        assert not batch["video_mask"][0].any()  # absent modality: whole row masked
    else:
        assert batch["audio"].shape == (5, DIMS["audio"]) and batch["video_mask"].tolist()[0] is False


CASES = [("unimodal", {"modality": "audio", "hidden": 32}), ("attention", {"hidden": 32})]


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("seq", [False, True])
def test_shapes_and_gradients(name, params, seq):
    torch.manual_seed(0)
    dims = DIMS if name != "unimodal" else {"audio": DIMS["audio"]}
    model = build_model(name, params, dims, C)
    items = _items(4, seq, np.random.default_rng(1))
    batch = collate([{k: v for k, v in it.items() if k.split("_")[0] in dims or k in ("id", "label", "target")} for it in items])
    out = model(batch)
    assert out["logits"].shape == (4, C)
    loss = emotion_loss(out["logits"], batch["label"], batch["target"], mse_weight=1.0)
    loss.backward()
    for pname, p in model.named_parameters():
        if not seq and "pool" in pname:  # sequence pooling is unused on utterance vectors
            continue
        assert p.grad is not None, f"no gradient reached {pname}"
    if "weights" in out:
        w = out["weights"]
        assert w.shape == (4, len(dims)) and torch.allclose(w.sum(-1), torch.ones(4))


def test_attention_masks_absent_modality():
    model = build_model("attention", {"hidden": 32, "modality_dropout": 0.0}, DIMS, C).eval()
    batch = collate(_items(3, False, np.random.default_rng(2)))
    w = model(batch)["weights"]
    video = sorted(DIMS).index("video")
    assert w[0, video] == 0  # sample 0 has no video
    assert (w[1:, video] > 0).all()


def test_unknown_model_and_key_list_valid_names():
    with pytest.raises(UnknownNameError, match="valid model names: .*attention.*unimodal"):
        build_model("no-such-model", {}, DIMS, C)
    with pytest.raises(ConfigError, match="unknown key 'hiden'.*valid keys here: .*hidden"):
        build_model("attention", {"hiden": 3}, DIMS, C)
    assert "attention" in MODELS.names()
