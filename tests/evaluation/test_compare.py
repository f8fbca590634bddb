"""Paired comparison of two runs: bootstrap intervals of the differences, McNemar's exact test, id
alignment (never row order), and the words it prints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emofuse.cli import app
from emofuse.evaluation.compare import compare_runs, describe, mcnemar_exact

CLASSES = ["neutral", "joy", "anger"]


def _run(folder, ids, true, pred):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ids, "true": [CLASSES[i] for i in true], "predicted": [CLASSES[i] for i in pred]}).to_csv(
        folder / "predictions.csv", index=False)
    return folder


def test_mcnemar_exact():
    assert mcnemar_exact(0, 10) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_exact(5, 5) == pytest.approx(1.0) and mcnemar_exact(0, 0) == 1.0


def test_compare_better_run_and_alignment_by_id(tmp_path):
    rng = np.random.default_rng(1)
    n = 600
    y = rng.integers(0, 3, n)
    good = np.where(rng.random(n) < 0.8, y, rng.integers(0, 3, n))
    bad = np.where(rng.random(n) < 0.5, y, rng.integers(0, 3, n))
    ids = [f"u{i}" for i in range(n)]
    a = _run(tmp_path / "a", ids, y, bad)
    order = rng.permutation(n)  # B's file in another row order: pairing is by id
    b = _run(tmp_path / "b", [ids[i] for i in order], y[order], good[order])
    cmp = compare_runs(a, b, n_boot=2000)
    f1 = next(d for d in cmp.differences if d.metric == "weighted_f1")
    assert f1.diff > 0.15 and f1.low > 0.1 and f1.p_value < 0.01
    assert cmp.only_b_right > cmp.only_a_right and cmp.mcnemar_p < 1e-6
    words = describe(cmp)
    assert "B is better on weighted F1" in words and "B gets significantly more samples right" in words
    same = compare_runs(a, a, n_boot=500)
    assert all(d.diff == 0 and d.low == 0 and d.high == 0 for d in same.differences)
    assert "no reliable difference" in describe(same) and same.mcnemar_p == 1.0


def test_compare_refuses_different_test_sets(tmp_path):
    a = _run(tmp_path / "a", ["x", "y"], [0, 1], [0, 1])
    b = _run(tmp_path / "b", ["x", "z"], [0, 1], [0, 1])
    with pytest.raises(ValueError, match="different ids"):
        compare_runs(a, b)
    c = _run(tmp_path / "c", ["x", "y"], [0, 2], [0, 1])
    with pytest.raises(ValueError, match="different true labels"):
        compare_runs(a, c)


def test_compare_cli(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 200)
    ids = [f"u{i}" for i in range(200)]
    a = _run(tmp_path / "a", ids, y, np.where(rng.random(200) < 0.6, y, 0))
    b = _run(tmp_path / "b", ids, y, np.where(rng.random(200) < 0.62, y, 0))
    r = CliRunner().invoke(app, ["compare", str(a), str(b), "--n-boot", "500"])
    assert r.exit_code == 0, r.output
    assert "B − A =" in r.output and "McNemar" in r.output
    r = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "nope")])
    assert r.exit_code != 0 and "no predictions.csv" in r.output
