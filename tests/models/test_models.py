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
from emofuse.models.build import build_model

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


CASES = [
    ("unimodal", {"modality": "audio", "hidden": 32}),
    ("early", {"hidden": 32}),
    ("late", {"hidden": 32}),
    ("attention", {"hidden": 32}),
]


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


def _han_batch(n=3):
    rng = np.random.default_rng(3)
    items = []
    for i in range(n):
        items.append({"id": f"s{i}", "label": i % C, "target": np.eye(C, dtype=np.float32)[i % C],
                      "audio": rng.normal(size=(int(rng.integers(5, 12)), 40)).astype(np.float32), "audio_present": True,
                      "text": rng.normal(size=(int(rng.integers(2, 6)), 16)).astype(np.float32), "text_present": True})
    return collate(items)


@pytest.mark.parametrize("ablate", [None, "local_attention", "cross_modal", "global_attention"])
def test_mer_han_shapes_gradients_and_ablations(ablate):
    torch.manual_seed(0)
    params = {"hidden": 32, "heads": 2}
    if ablate:
        params[ablate] = False
    model = build_model("mer_han", params, {"audio": 40, "text": 16}, C)
    batch = _han_batch()
    out = model(batch)
    assert out["logits"].shape == (3, C)
    model_loss_value = emotion_loss(out["logits"], batch["label"], batch["target"], 1.0)
    model_loss_value.backward()
    assert all(p.grad is not None for p in model.parameters())
    full = build_model("mer_han", {"hidden": 32, "heads": 2}, {"audio": 40, "text": 16}, C)
    n_full = sum(p.numel() for p in full.parameters())
    n = sum(p.numel() for p in model.parameters())
    if ablate in ("local_attention", "cross_modal"):
        assert n < n_full  # the ablated block is gone, not bypassed
    if ablate == "global_attention":
        assert "weights" not in out
    else:
        assert out["weights"].shape == (3, 2)


def test_late_fusion_fits_weights_on_validation():
    torch.manual_seed(0)
    model = build_model("late", {"hidden": 32, "weight_step": 0.5}, {"audio": 4, "text": 4}, 2)
    rng = np.random.default_rng(0)
    items = []
    for i in range(40):  # text carries the label, audio is noise: validation must favour text
        y = i % 2
        items.append({"id": str(i), "label": y, "target": np.eye(2, dtype=np.float32)[y],
                      "audio": rng.normal(size=4).astype(np.float32), "audio_present": True,
                      "text": (np.eye(4)[y] * 5).astype(np.float32), "text_present": True})
    with torch.no_grad():  # make the text member a perfect classifier, the audio one random
        model.members["text"][0].weight.zero_(); model.members["text"][0].bias.zero_()
        model.members["text"][0].weight[0, 0] = 1; model.members["text"][0].weight[1, 1] = 1
        model.members["text"][3].weight.zero_(); model.members["text"][3].bias.zero_()
        model.members["text"][3].weight[0, 0] = 10; model.members["text"][3].weight[1, 1] = 10
        model.norm["text"].weight.fill_(1); model.norm["text"].bias.zero_()
    model.eval()
    info = model.fit_validation([collate(items[:20]), collate(items[20:])])
    assert info["fusion_weights"]["text"] > info["fusion_weights"]["audio"]
