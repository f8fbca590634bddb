"""experts: a product of calibrated experts, trained through the loop on cached toy features (a
linear member per input, a probs member reading class probabilities as extracted), its temperatures
and weights fitted on validation, and modalities a clip lacks dropping out of the product."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from emofuse.config import RunConfig, load_config
from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.data.dataset import collate
from emofuse.labels import LabelSet
from emofuse.models.build import build_model
from emofuse.training.run import train_run
from tests.training.cached import write_features

N = {"train": 240, "val": 90, "test": 90}
C = 3


def _corpus(root):
    rng = np.random.default_rng(0)
    labels = LabelSet("toy3", ("angry", "happy", "sad"))
    split = np.repeat(list(N), list(N.values()))
    y = rng.integers(0, C, len(split))
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": f"u{i:04d}", "split": s, "fold": -1, "label": labels.classes[y[i]]}
            for i, s in enumerate(split)]
    Manifest("toy", labels, pd.DataFrame(rows, columns=MANIFEST_COLUMNS), {"synthetic": True}).save(root / "manifest.csv")
    ids = [r["id"] for r in rows]
    for name, dim, modality in (("a1", 8, "audio"), ("a2", 5, "audio"), ("t", 6, "text")):
        x = rng.normal(size=(C, dim))[y] * 0.7 + rng.normal(size=(len(y), dim))
        write_features(root / "cache", "toy", name, ids, x, modality)
    # a 'video' input that holds a noisy classifier's probabilities, columns in reverse class order, and a score
    logits = np.eye(C)[y] * 1.5 + rng.normal(size=(len(y), C))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    write_features(root / "cache", "toy", "v", ids, np.concatenate([p[:, ::-1], rng.normal(size=(len(y), 2))], 1), "video")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("experts"))


EXPERTS = {"audio": [{"input": "audio:a1"}, {"input": "audio:a2"}], "text": [{"input": "text"}],
           "video": [{"input": "video", "kind": "probs", "columns": [2, 1, 0]}]}


def _run(corpus, out, **params):
    cfg = {"name": "experts",
           "data": {"manifest": str(corpus / "manifest.csv"), "cache": str(corpus / "cache"),
                    "features": {"audio": ["a1", "a2"], "text": "t", "video": "v"}, "standardise": {"video": "none"}},
           "model": {"name": "experts", "params": {"experts": EXPERTS, **params}},
           "train": {"max_epochs": 12, "patience": 12, "lr": 2e-2, "mse_weight": 0.0, "progress": False, "logger": "none"},
           "out": str(out)}
    (out / "c.yaml").write_text(yaml.safe_dump(cfg))
    return train_run(load_config(RunConfig, out / "c.yaml")), out / "experts"


def test_trains_calibrates_and_fuses(corpus, tmp_path):
    m, run = _run(corpus, tmp_path)
    fitted = m["units"][0]["fitted_on_val"]
    assert set(fitted) == {"audio", "text", "video", "fused"}
    assert set(fitted["fused"]["fusion_weights"]) == {"audio", "text", "video"}
    assert m["test"]["accuracy"] > 0.8, m["test"]  # three informative experts, fused
    from safetensors.torch import load_file

    state = load_file(str(run / "model.safetensors"))
    assert float(state["members.video.temperature"]) != 1.0 and float(state["gates.audio.weight"]) >= 0
    # the probs input was not standardised: the standardiser is the identity for it
    std = load_file(str(run / "standardiser.safetensors"))
    assert torch.equal(std["video.mean"], torch.zeros(5)) and torch.equal(std["video.std"], torch.ones(5))
    assert not torch.equal(std["text.std"], torch.ones(6))


def test_a_missing_modality_drops_out_of_the_product():
    torch.manual_seed(0)
    dims = {"audio:a1": 8, "audio:a2": 5, "text": 6, "video": 5}
    model = build_model("experts", {"experts": EXPERTS}, dims, C).eval()
    rng = np.random.default_rng(1)
    items = []
    for i in range(2):
        it = {"id": f"s{i}", "label": 0, "target": np.eye(C, dtype=np.float32)[0]}
        for k, d in dims.items():
            it[k] = rng.normal(size=d).astype(np.float32)
            it[f"{k}_present"] = True
        it["video"] = np.array([0.2, 0.3, 0.5, 0.0, 0.0], np.float32)
        items.append(it)
    items[1]["text_present"] = False
    out = model(collate(items))
    w = out["weights"]
    assert torch.allclose(w[0], torch.full((3,), 1 / 3)) and w[1, 1] == 0 and torch.allclose(w[1].sum(), torch.tensor(1.0))
    # sample 1 is the product of its audio and video experts alone
    z = model._member_logits(collate(items))
    experts = [model._expert(m, z)[0][1] for m in ("audio", "video")]
    assert torch.allclose(out["logits"][1], torch.log_softmax(sum(experts), -1), atol=1e-5)
    # the probs member reads its columns as the class probabilities
    assert torch.allclose(torch.softmax(model._expert("video", z)[0][0], -1), torch.tensor([0.5, 0.3, 0.2]), atol=1e-5)


def test_refuses_members_that_are_not_inputs():
    with pytest.raises(ValueError, match="must name distinct inputs"):
        build_model("experts", {"experts": {"audio": [{"input": "audio:x"}]}}, {"audio:a": 3}, C)
    with pytest.raises(ValueError, match="under another modality"):
        build_model("experts", {"experts": {"text": [{"input": "audio"}]}}, {"audio": 3}, C)
    with pytest.raises(ValueError, match="columns"):
        build_model("experts", {"experts": {"video": [{"input": "video", "kind": "probs", "columns": [0]}]}}, {"video": 3}, C)
