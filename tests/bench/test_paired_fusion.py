"""Bench rows for issue 12 without real data: the product of a fusion's own unimodal members as a
reference row with the fusion's paired difference to it, the ECE column, and the target of the
chosen project model over the strongest baseline by a margin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofuse.bench.driver import BenchOptions, Target, product_rows, score_entry
from emofuse.bench.report import results_table, target_rows, versus_product_lines

CLASSES = ["a", "b", "c"]


def _write(run_dir, ids, y, probs, name):
    run_dir.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"id": ids, "true": [CLASSES[i] for i in y], "predicted": [CLASSES[i] for i in probs.argmax(1)]})
    for j, c in enumerate(CLASSES):
        df[f"p_{c}"] = probs[:, j]
    df.to_csv(run_dir / name, index=False)


@pytest.fixture
def task(tmp_path):
    """Two unimodal runs that each see the label weakly, and a fusion run; on test and validation."""
    rng = np.random.default_rng(0)
    results, opts = {}, BenchOptions(data=tmp_path, out=tmp_path, bootstrap=200)
    data = {}
    for split, n in (("test", 300), ("val", 120)):
        y = rng.integers(0, 3, n)
        ids = [f"{split}{i}" for i in range(n)]
        members = {m: np.exp(1.2 * np.eye(3)[y] + rng.normal(0, 1, (n, 3))) for m in ("audio", "text")}
        data[split] = (ids, y, {m: p / p.sum(1, keepdims=True) for m, p in members.items()})
    f = {"test": "predictions.csv", "val": "predictions_val.csv"}
    for m in ("audio", "text"):
        for split, (ids, y, members) in data.items():
            _write(tmp_path / "runs" / f"uni-{m}", ids, y, members[m], f[split])
        ids, y, members = data["test"]
        results[f"uni-{m}"] = {**score_entry(y, members[m].argmax(1), CLASSES, opts), "kind": "project",
                               "model": "unimodal", "features": {m: "enc"}, "run_dir": f"runs/uni-{m}",
                               "val": {"weighted_f1": 0.5}}
    ids, y, members = data["test"]
    fused = members["audio"] + members["text"]  # a mean: a different decision from the product on some rows
    for split, (sids, sy, sm) in data.items():
        _write(tmp_path / "runs" / "fusion", sids, sy, (sm["audio"] + sm["text"]) / 2, f[split])
    results["fusion"] = {**score_entry(y, fused.argmax(1), CLASSES, opts), "kind": "project", "model": "late",
                         "features": {"audio": "enc", "text": "enc"}, "run_dir": "runs/fusion", "val": {"weighted_f1": 0.6}}
    # a fusion over an encoder no unimodal run used gets no product row
    results["other"] = {**results["fusion"], "features": {"audio": "enc", "text": "other-enc"}}
    return tmp_path, results, opts, data


def test_product_row_is_the_product_of_the_members(task):
    from emofuse.scoring.metrics import classification_metrics

    tmp_path, results, opts, data = task
    rows = product_rows(results, tmp_path, CLASSES, opts)
    assert list(rows) == ["product of audio × text"]
    row = rows["product of audio × text"]
    ids, y, members = data["test"]
    expected = classification_metrics(y, (members["audio"] * members["text"]).argmax(1), 3)["weighted_f1"]
    assert row["weighted_f1"] == pytest.approx(expected) and row["kind"] == "reference"
    assert row["members"] == ["uni-audio", "uni-text"]
    assert 0 <= row["calibration"]["ece"] <= 1 and "temperature" in row["calibration"]
    v = results["fusion"]["versus_product"]
    assert v["row"] == "product of audio × text"
    assert v["diff"] == pytest.approx(results["fusion"]["weighted_f1"] - expected)
    assert v["ci95"][0] <= v["diff"] <= v["ci95"][1]
    assert "versus_product" not in results["other"]
    results.update(rows)
    lines = "\n".join(versus_product_lines(results))
    assert "| fusion | product of audio × text |" in lines
    assert ("| yes" in lines) == (v["diff"] > 0)


def test_results_table_has_an_ece_column(task):
    _, results, _, _ = task
    results["fusion"]["calibration"] = {"ece": 0.1234, "ece_calibrated": 0.0456}
    table = results_table(results, "fusion")
    head = table.splitlines()[0]
    assert "| ECE |" in head and len(head.split("|")) == len(table.splitlines()[2].split("|"))
    assert "0.123 → 0.046" in table


def test_over_baseline_target_needs_the_margin(task):
    _, results, _, _ = task

    class T:
        name, targets = "t", [Target("weighted_f1", None, "x", over_baseline=0.02)]

    base = dict(results["uni-audio"], kind="baseline")
    for gap, met in ((0.03, True), (0.01, False)):
        base.update(weighted_f1=results["fusion"]["weighted_f1"] - gap)
        row, = target_rows([T], [{"results": {"fusion": results["fusion"], "base": base}}])
        assert row["best"] == "fusion" and row["reaches_target"] is met and row["beats_baseline"] is True
