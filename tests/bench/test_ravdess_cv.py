"""The ravdess benchmark's actor-independent cross-validation: fold plans, the per-fold limit, and a
small real slice (a dozen clips per fold, two epochs) that writes the per-fold table. The slice's
figures mean nothing; skipped, with the reason, without ../shared/data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emofuse.bench import run_bench
from emofuse.bench.driver import BenchOptions
from emofuse.bench.ravdess import _limit_per_fold, fold_manifest
from emofuse.corpora.base import Manifest
from emofuse.labels import RAVDESS8
from emofuse.training.plans import plans as _plans
from tests.conftest import need


def _manifest(n_actors: int = 12, per_actor: int = 16) -> Manifest:
    rows = []
    for a in range(1, n_actors + 1):
        for i in range(per_actor):
            rows.append({"id": f"{a}-{i}", "split": "test" if a > n_actors - 2 else "train", "fold": (a - 1) // 2,
                         "label": RAVDESS8.classes[i % 8], "speaker": f"Actor_{a:02d}", "text": "", "audio": "", "video": ""})
    return Manifest("ravdess", RAVDESS8, pd.DataFrame(rows), {})


def test_fold_manifest_is_the_training_loops_plan():
    m = _manifest()
    plans = {p["name"]: p for p in _plans(m, cross_validation=True)}
    for f in range(6):
        split = fold_manifest(m, f).df["split"].to_numpy()
        for s in ("train", "val", "test"):
            assert np.flatnonzero(split == s).tolist() == plans[f"fold{f}"][s].tolist(), (f, s)
    assert set(fold_manifest(m, 5).df.loc[lambda d: d.split == "val", "speaker"]) == {"Actor_01", "Actor_02"}


def test_limit_is_per_fold_and_keeps_the_split():
    m = _manifest(per_actor=16)
    lim = _limit_per_fold(m, 8, seed=0)
    assert lim.df.groupby("fold").size().to_dict() == {f: 8 for f in range(6)}
    assert (lim.df.set_index("id")["split"] == m.df.set_index("id").loc[lim.df["id"], "split"]).all()
    assert _limit_per_fold(m, None, 0) is m


def test_eval_data_needs_the_split_protocol(tmp_path):
    opts = BenchOptions(data=tmp_path, out=tmp_path / "out", eval_data=tmp_path)
    with pytest.raises(ValueError, match="protocol=split"):
        run_bench("ravdess", opts, protocol="cv")
    with pytest.raises(ValueError, match="cv or split"):
        run_bench("ravdess", BenchOptions(data=tmp_path, out=tmp_path / "out"), protocol="loso")


@pytest.mark.realdata
def test_cross_validated_slice(data_root, tmp_path):
    opts = BenchOptions(data=need(data_root, "ravdess_speech"), out=tmp_path, limit=12, max_epochs=2,
                        models=["unimodal", "ensemble(egemaps+compare+mfcc)"], baseline="linear", bootstrap=50,
                        progress=False)
    metrics = run_bench("ravdess", opts)
    for row in ("unimodal", "ensemble(egemaps+compare+mfcc)", "baseline-linear-compare", "baseline-linear-average"):
        assert f"ravdess8/{row}" in metrics and f"ravdess7/{row}" in metrics
    res = json.loads((tmp_path / "ravdess8" / "results.json").read_text())["results"]
    for row, e in res.items():  # every row is scored on the six pooled test folds
        assert e["n_test"] == 72 and len(e["fold_weighted_f1"]) == 6, row
    # the baselines were fitted fold by fold, C chosen on that fold's validation actors
    for f in range(6):
        fitted = json.loads((tmp_path / "ravdess8" / "runs" / "baseline-linear-compare" / f"fold{f}" / "baseline.json").read_text())
        assert fitted["C"] in (0.0003, 0.001, 0.003, 0.01, 0.1)
    # the ensemble's temperatures were fitted on each fold's validation actors
    units = json.loads((tmp_path / "ravdess8" / "runs" / "ensemble(egemaps+compare+mfcc)" / "metrics.json").read_text())["units"]
    assert [u["fold"] for u in units] == [f"fold{f}" for f in range(6)]
    assert all(len(u["fitted_on_val"]["temperatures"]) == 3 for u in units)
    report = (tmp_path / "report.md").read_text()
    assert "Actor-independent cross-validation" in report and "| fold 0 | fold 1 |" in report
    assert "mean over folds" in report and "Chosen on validation" in report
    # a fold is two actors, one man and one woman, and no actor is in two folds
    df = pd.read_csv(tmp_path / "ravdess8" / "manifest.csv")
    assert df.groupby("speaker").fold.nunique().eq(1).all() and df.groupby("fold").speaker.nunique().eq(2).all()
