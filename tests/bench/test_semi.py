"""bench semi on a slice of MELD: the three rows, the pseudo-labelled runs' records, and the summary
that states the margin and the kept rows' accuracy."""

from __future__ import annotations

import json

import pytest

from emofuse.bench import run_bench
from emofuse.bench.driver import BenchOptions
from emofuse.corpora.base import Manifest
from tests.conftest import need

pytestmark = pytest.mark.realdata


def test_semi_meld_slice(data_root, tmp_path):
    need(data_root, "meld")
    opts = BenchOptions(data=data_root, out=tmp_path, cache=tmp_path / "cache", limit=60, max_epochs=3,
                        baseline="none", bootstrap=50, progress=False)
    metrics = run_bench("semi", opts, settings="meld", seeds=2, labelled=0.2)
    rows = {"meld-20pct/supervised-only", "meld-20pct/pseudo-labelled (threshold 0.9)",
            "meld-20pct/pseudo-labelled (top 0.5 per class)", "meld-full/supervised (every label)"}
    assert rows <= set(metrics), sorted(metrics)
    semi = Manifest.load(tmp_path / "meld-20pct" / "manifest.csv").df
    hidden = semi["split"] == "unlabeled"
    assert hidden.any() and (semi.loc[hidden, "label"] == "").all() and (semi.loc[hidden, "hidden_label"] != "").all()
    run = tmp_path / "meld-20pct" / "runs" / "pseudo-labelled (top 0.5 per class)"
    summary = json.loads((run / "pseudo_label.json").read_text())
    kept = summary["rounds"][1]["pseudo_labels"]
    assert kept["kept"] >= 1 and kept["candidates"] == int(hidden.sum())
    for r in (0, 1):  # every round trained both seeds
        assert all((run / f"round{r}" / f"seed{s}" / "predictions_unlabeled.csv").is_file() for s in (0, 1))
    report = (tmp_path / "report.md").read_text()
    assert "Pseudo-labelling against the supervised rows" in report and "| predicted class | kept | right |" in report


def test_semi_meld_slice_soft_and_aligned_pseudo_labels_on_every_row(data_root, tmp_path):
    need(data_root, "meld")
    opts = BenchOptions(data=data_root, out=tmp_path, cache=tmp_path / "cache", limit=60, max_epochs=2,
                        baseline="none", bootstrap=50, progress=False)
    with pytest.raises(ValueError, match="align"):
        run_bench("semi", opts, settings="meld", align="prior")
    metrics = run_bench("semi", opts, settings="meld", seeds=1, labelled=0.2, pseudo_rows="all", soft=True,
                        ceiling=False, align="none,labelled")
    aligned = "pseudo-labelled (every row, soft, aligned to the labelled shares)"
    assert set(metrics) == {"supervised-only", "pseudo-labelled (every row, soft)", aligned}
    summary = json.loads((tmp_path / "meld-20pct" / "runs" / aligned / "pseudo_label.json").read_text())
    assert summary["align"] == "labelled" and summary["rounds"][1]["pseudo_labels"]["align"]["how"] == "labelled"
    assert "Aligned (labelled) to the shares" in (tmp_path / "report.md").read_text()
    run = tmp_path / "meld-20pct" / "runs" / "pseudo-labelled (every row, soft)"
    df = Manifest.load(run / "manifest_round1.csv").df
    pseudo = df["pseudo"] == "1"
    assert pseudo.sum() == (Manifest.load(tmp_path / "meld-20pct" / "manifest.csv").df["split"] == "unlabeled").sum()
    assert all(abs(sum(json.loads(s)) - 1) < 1e-4 for s in df.loc[pseudo, "soft_label"])
    assert "soft pseudo-labels" in (tmp_path / "report.md").read_text()


def test_semi_meld_finetuned_slice(data_root, tmp_path):
    need(data_root, "meld")
    opts = BenchOptions(data=data_root, out=tmp_path, cache=tmp_path / "cache", limit=40, max_epochs=1,
                        baseline="none", bootstrap=50, progress=False)
    with pytest.raises(ValueError, match="weight=1"):
        run_bench("semi", opts, settings="meld", meld_model="finetune")
    with pytest.raises(ValueError, match="pseudo_rows"):
        run_bench("semi", opts, settings="meld", pseudo_rows="both")
    metrics = run_bench("semi", opts, settings="meld", seeds=1, labelled=0.3, meld_model="finetune", weight=1.0,
                        pseudo_rows="top", ceiling=False)
    assert set(metrics) == {"supervised-only", "pseudo-labelled (top 0.5 per class)"}  # one task: rows unprefixed
    run = tmp_path / "meld-30pct" / "runs" / "pseudo-labelled (top 0.5 per class)"
    config = (run / "round1" / "config.yaml").read_text()
    assert "finetune_text" in config and "text: raw" in config
    summary = json.loads((run / "pseudo_label.json").read_text())
    kept = summary["rounds"][1]["pseudo_labels"]
    assert kept["kept"] >= 1 and summary["weight"] == 1.0
    assert "MELD's model: finetune" in (tmp_path / "report.md").read_text()


def test_the_corpus_classes_rows_name_only_the_unlabelled_corpus_classes(tmp_path):
    from emofuse.bench.semi import Options, _rows

    speech = ["neutral", "happy", "sad", "angry", "fearful", "surprised"]
    o = Options(classes="all,corpus", pseudo_rows="threshold", align="none")
    rows = _rows("unimodal", {"audio": "a"}, {}, {}, [0], o, corpus=("nEMO", speech))
    assert [r.name for r in rows] == ["supervised-only", "pseudo-labelled (threshold 0.9)",
                                      "pseudo-labelled (threshold 0.9, nEMO's classes)"]
    assert rows[1].train["pseudo_label"]["classes"] == [] and rows[2].train["pseudo_label"]["classes"] == speech
    # a corpus with every class (MELD): one set of rows, whatever is asked
    only = _rows("unimodal", {"text": "t"}, {}, {}, [0], Options(classes="corpus", pseudo_rows="top"))
    assert [r.name for r in only] == ["supervised-only", "pseudo-labelled (top 0.5 per class)"]
    with pytest.raises(ValueError, match="classes"):
        run_bench("semi", BenchOptions(data=tmp_path, out=tmp_path / "out", progress=False), classes="nemo")


def test_the_restricted_baseline_zeroes_the_classes_a_corpus_lacks(tmp_path):
    import pandas as pd

    from emofuse.bench.semi import restricted_f1

    rows = [("a", "x", [0.1, 0.5, 0.4]), ("b", "y", [0.2, 0.3, 0.5]), ("c", "z", [0.1, 0.2, 0.7])]
    for seed in ("seed0", "seed1"):  # the mean over the run's seeds
        (tmp_path / seed).mkdir()
        pd.DataFrame([{"id": i, "true": t, "predicted": "", **{f"p_{c}": v for c, v in zip("xyz", p)}} for i, t, p in rows]
                     ).to_csv(tmp_path / seed / "predictions.csv", index=False)
    from sklearn.metrics import f1_score

    true = ["x", "y", "z"]
    expect = {("x", "y", "z"): ["y", "z", "z"],  # as predicted
              ("x", "y"): ["y", "y", "y"],  # z gone: b and c fall to y
              ("x", "z"): ["z", "z", "z"]}  # y gone: a falls to z
    for allowed, pred in expect.items():
        assert restricted_f1(tmp_path, list(allowed)) == pytest.approx(f1_score(true, pred, average="weighted")), allowed
    assert restricted_f1(tmp_path, ["y"]) == pytest.approx(f1_score(true, ["y", "y", "y"], average="weighted"))
