"""Late fusion of finished runs with fit: cv (temperatures, weights pulled towards equal by
cross-validation) and combine: product, on run folders written here (no training)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emofuse.training.late_runs import LateRunsConfig, run_late_runs

CLASSES = ["neutral", "happy", "sad"]


def _run(folder, strength, sharpen, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps({"name": "t3", "classes": CLASSES}))
    for name, n, split_seed in (("predictions.csv", 400, 0), ("predictions_val.csv", 200, 1)):
        y = np.random.default_rng(split_seed).integers(0, 3, n)  # the same rows and labels for every member
        logits = sharpen * (strength * np.eye(3)[y] + rng.normal(0, 1, (n, 3)))
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "true": [CLASSES[i] for i in y],
                           "predicted": [CLASSES[i] for i in p.argmax(1)]})
        for j, c in enumerate(CLASSES):
            df[f"p_{c}"] = p[:, j]
        df.to_csv(folder / name, index=False)
    return str(folder)


@pytest.mark.parametrize("combine", ["mean", "product"])
def test_cv_fusion_of_runs(tmp_path, combine):
    members = {"audio": {"run": _run(tmp_path / "a", 1.5, 3.0, 1)},  # informative but overconfident
               "text": {"run": _run(tmp_path / "t", 1.5, 1.0, 2)},
               "video": {"run": _run(tmp_path / "v", 0.0, 1.0, 3)}}  # noise
    cfg = LateRunsConfig(name="f", manifest="unused.csv", members=members, fusion={"combine": combine},
                         out=str(tmp_path / "out"))
    m = run_late_runs(cfg, progress=False)
    assert m["fusion"]["method"] == "cv" and m["fusion"]["combine"] == combine
    temps = m["fusion"]["member_temperatures"]
    assert temps["audio"] > 1.5 * temps["text"]  # the overconfident member is softened
    best_member = max(mm["test"]["weighted_f1"] for mm in m["members"].values())
    assert m["test"]["weighted_f1"] > best_member  # two independent informative members beat either
    assert m["calibration"]["fusion"]["ece"] < m["calibration"]["audio"]["ece"]
    out = tmp_path / "out" / "f"
    table = (out / "table.md").read_text()
    assert f"late fusion ({combine})" in table and "| ECE |" in table
    assert (out / "reliability.png").is_file()
    pred = pd.read_csv(out / "predictions.csv")
    np.testing.assert_allclose(pred[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-4)


def test_grid_with_product_is_refused(tmp_path):
    members = {"audio": {"run": "a"}, "text": {"run": "b"}}
    with pytest.raises(ValueError, match="fit: cv"):
        LateRunsConfig(name="f", manifest="m.csv", members=members, fusion={"combine": "product", "fit": "grid"})
    cfg = LateRunsConfig(name="f", manifest="m.csv", members=members, fusion={"prior": {"audio": 0.7, "text": 0.3}})
    assert cfg.fusion.method == "grid"  # a prior keeps the former search
