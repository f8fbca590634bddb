"""The loop's multi-label option: multi-hot targets, BCE, a threshold fitted on validation,
multi-label metrics and predictions; single-label runs unchanged."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from emofuse.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, validate
from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.features import extract
from emofuse.features.encoders.base import Encoded, Encoder
from emofuse.labels import LabelSet
from emofuse.training.run import train_run

CLASSES = ("w0", "w1", "w2", "w3")


class KeywordEncoder(Encoder):
    """Text -> which class words it holds (0/1 per class) plus seeded noise."""

    name, modality, dim = "keywords", "text", 6

    def config(self):
        return {"kind": "keywords"}

    def encode(self, items):
        out = []
        for text in items:
            rng = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
            v = np.array([float(c in text.split()) for c in CLASSES] + [0, 0], np.float32)
            out.append(Encoded(v + rng.normal(0, 0.1, 6).astype(np.float32)))
        return out


@pytest.fixture(scope="module")
def multilabel_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ml")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(180):
        hot = rng.random(4) < 0.35
        hot[rng.integers(4)] = True  # at least one label
        words = [c for c, h in zip(CLASSES, hot) if h]
        rows.append({c: "" for c in MANIFEST_COLUMNS} | {
            "id": f"r{i}", "split": ("train", "train", "train", "val", "test")[i % 5], "fold": -1,
            "text": " ".join(words + [f"filler{i}"]), "label": words[0], "soft_label": json.dumps([int(h) for h in hot])})
    m = Manifest("ml", LabelSet("kw", CLASSES), pd.DataFrame(rows, columns=MANIFEST_COLUMNS))
    m.save(d / "manifest.csv")
    extract(m, [KeywordEncoder()], d / "cache", progress=False)
    return d


def _cfg(d, model="unimodal", **train):
    return RunConfig(name=f"{model}-ml", out=str(d / "runs"),
                     data=DataConfig(manifest=str(d / "manifest.csv"), cache=str(d / "cache"), features={"text": "keywords"}),
                     model=ModelConfig(name=model),
                     train=TrainConfig(**{"max_epochs": 25, "patience": 25, "lr": 2e-2, "monitor": "val_macro_f1",
                                          "logger": "none", "progress": False, "multi_label": True, "mse_weight": 0.0,
                                          **train}))


def test_multilabel_run(multilabel_data):
    m = train_run(_cfg(multilabel_data))
    assert m["test"]["macro_f1"] > 0.9 and "micro_f1" not in m["test"]  # the summary keeps the four names
    t = m["units"][0]["fitted_on_val"]["threshold"]
    assert 0.05 <= t <= 0.95
    assert len(m["per_class"]) == 4 and np.asarray(m["confusion"]).shape == (4, 4)
    pred = pd.read_csv(multilabel_data / "runs" / "unimodal-ml" / "predictions.csv", keep_default_na=False)
    assert pred["true"].str.contains(";").any()  # several labels per sample
    probs = pred[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert not np.allclose(probs.sum(1), 1.0)  # independent sigmoids, not a softmax
    picked = [";".join(c for c, p in zip(CLASSES, row) if p >= t) for row in probs]
    assert (pred["predicted"] == picked).mean() > 0.97  # (5-decimal rounding at the threshold aside)


def test_multilabel_refuses_what_it_cannot_train(multilabel_data):
    with pytest.raises(ValueError, match="per-class logits"):
        train_run(_cfg(multilabel_data, model="late", max_epochs=1))
    bad = _cfg(multilabel_data).model_dump()
    bad["data"]["label_smoothing"] = 0.1
    with pytest.raises(ConfigError, match="label_smoothing must be 0"):
        validate(RunConfig, bad)


def test_validation_checks_per_epoch(multilabel_data):
    """train.val_checks_per_epoch: the loop validates (and may keep the weights) mid-epoch too."""
    units = {}
    for n in (1, 2):
        cfg = _cfg(multilabel_data, max_epochs=3, patience=10, val_checks_per_epoch=n)
        units[n] = train_run(cfg.model_copy(update={"name": f"checks{n}"}))["units"][0]
    assert units[1]["validation_checks"] == 3 and units[2]["validation_checks"] == 6
    assert 0 < units[2]["best_step"] <= units[2]["n"]["train"]  # some optimiser steps, at most 3 epochs' worth
    with pytest.raises(ValueError):
        TrainConfig(val_checks_per_epoch=0)
