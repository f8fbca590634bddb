"""Small slices of the face benchmarks on CK+ (faces the bundled CNN never saw): `bench ckplus`
(subject-grouped folds, pooled) and `bench fer2013 -o eval_corpus=ckplus` (trained on FER2013, tested
on CK+), each with the CNN alone and with test-time augmentation. The figures of such slices mean
nothing; the path runs and keeps its promises. Skipped, with the reason, without ../shared/data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emofuse.bench import run_bench
from emofuse.bench.driver import BenchOptions
from emofuse.corpora.base import Manifest
from tests.conftest import need

pytestmark = pytest.mark.realdata


def test_ckplus_folds_by_subject_and_pools_every_test_image(data_root, tmp_path):
    need(data_root, "ckplus48")
    opts = BenchOptions(data=data_root, out=tmp_path, limit=25, max_epochs=2, bootstrap=50, progress=False,
                        baseline="linear", models=["unimodal(fer2013,tta=none)", "unimodal(fer2013,tta=flip)"])
    metrics = run_bench("ckplus", opts, folds=3)
    for k in range(3):
        for row in ("unimodal(fer2013,tta=flip)", "fer2013-cnn", "fer2013-cnn tta=flip_shift",
                    "baseline-linear-fer2013,tta=none"):
            assert f"ckplus-fold{k}/{row}" in metrics, sorted(metrics)
    tests = [Manifest.load(tmp_path / "ckplus" / f"fold{k}.csv").df.query("split == 'test'") for k in range(3)]
    subjects = [set(t["speaker"]) for t in tests]
    assert not (subjects[0] & subjects[1]) and not (subjects[1] & subjects[2]) and not (subjects[0] & subjects[2])
    assert all("contempt" not in set(t["label"]) for t in tests)
    report = (tmp_path / "report.md").read_text()
    pooled = report[report.index("## All folds pooled"):]
    n_test = sum(len(t) for t in tests)
    row = next(line for line in pooled.splitlines() if line.startswith("| fer2013-cnn |"))
    assert row.split("|")[7].strip() == str(n_test) and row.split("|")[8].strip() == "3"
    assert "Target (issue 12)" in pooled and "**" in pooled


def test_fer2013_tested_on_ckplus_with_tta(data_root, tmp_path):
    need(data_root, "fer2013_train"), need(data_root, "ckplus48")
    opts = BenchOptions(data=data_root, out=tmp_path, limit=40, max_epochs=2, bootstrap=50, progress=False,
                        encoders={"video": "fer2013@tta=flip"}, models=["unimodal(fer2013@tta=flip)"])
    metrics = run_bench("fer2013", opts, eval_corpus="ckplus")
    assert {"unimodal(fer2013@tta=flip)", "fer2013-cnn", "fer2013-cnn tta=flip"} <= set(metrics)
    assert metrics["fer2013-cnn"]["accuracy"] != metrics["fer2013-cnn tta=flip"]["accuracy"] or \
        metrics["fer2013-cnn"]["confusion"] != metrics["fer2013-cnn tta=flip"]["confusion"]
    df = pd.read_csv(tmp_path / "fer2013" / "manifest.csv", dtype=str, keep_default_na=False)
    test = df[df["split"] == "test"]
    assert len(test) == 40 and test["id"].str.startswith("eval:").all() and "neutral" not in set(test["label"])
    assert not df.loc[df["split"] != "test", "id"].str.startswith("eval:").any()  # CK+ never trains
    report = (tmp_path / "report.md").read_text()
    assert "CK+" in report and "not measurable" not in report
    with pytest.raises(ValueError, match="eval_corpus"):
        run_bench("fer2013", opts, eval_corpus="meld")


def test_fer2013_validated_on_half_of_ckplus(data_root, tmp_path):
    need(data_root, "fer2013_train"), need(data_root, "ckplus48")
    opts = BenchOptions(data=data_root, out=tmp_path, limit=60, max_epochs=2, bootstrap=50, progress=False,
                        encoders={"video": "fer2013@tta=none"}, models=["unimodal(fer2013@tta=none)"])
    metrics = run_bench("fer2013", opts, eval_corpus="ckplus", target_val=True)
    assert {"unimodal(fer2013@tta=none)", "fer2013-cnn"} <= set(metrics)
    full = pd.read_csv(tmp_path / "prepared" / "eval.csv", dtype=str, keep_default_na=False)
    assert set(full["split"]) == {"val", "test"}  # CK+ in two subject halves, none of it trains
    assert not set(full.loc[full["split"] == "val", "speaker"]) & set(full.loc[full["split"] == "test", "speaker"])
    df = pd.read_csv(tmp_path / "fer2013" / "manifest.csv", dtype=str, keep_default_na=False)
    held = df[df["split"] != "train"]
    assert held["id"].str.startswith("eval:").all() and {"val", "test"} <= set(held["split"])
    assert not df.loc[df["split"] == "train", "id"].str.startswith("eval:").any()
    assert "other half validates" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="target_val needs eval_corpus"):
        run_bench("fer2013", opts, target_val=True)


def test_fer2013_face_network_its_ensemble_and_its_run_on_ckplus(data_root, tmp_path):
    """bench fer2013 -o face_net=true trains finetune_face (a tiny one here) and ensembles it with the
    CNN on validation; -o face_run=RUN scores that run on CK+ without training it again."""
    need(data_root, "fer2013_train"), need(data_root, "ckplus48")
    opts = BenchOptions(data=data_root, out=tmp_path / "fer", limit=60, max_epochs=2, bootstrap=50, progress=False,
                        models=["finetune_face"])
    metrics = run_bench("fer2013", opts, face_net=True, face_epochs=2, face_width=4)
    ens = metrics["ensemble(finetune_face+cnn)"]
    assert {"finetune_face", "fer2013-cnn"} <= set(metrics) and ens["kind"] == "project"
    fitted = json.loads((tmp_path / "fer" / "fer2013" / "results.json").read_text())["results"][
        "ensemble(finetune_face+cnn)"]["fitted_on_val"]
    assert set(fitted["fusion_weights"]) == {"finetune_face", "cnn(fer2013)"} and fitted["fused_temperature"] > 0
    run = tmp_path / "fer" / "fer2013" / "runs" / "finetune_face"
    cfg = (run / "config.yaml").read_text()
    assert "lr_schedule: cosine" in cfg and "ce_label_smoothing: 0.1" in cfg and "face_size: 48" in cfg
    assert len(pd.read_csv(run.parent / "ensemble(finetune_face+cnn)" / "predictions_val.csv")) == 60
    report = (tmp_path / "fer" / "report.md").read_text()
    assert "ensemble(finetune_face+cnn)" in report and "70%" in report

    ck = BenchOptions(data=data_root, out=tmp_path / "ck", limit=40, max_epochs=1, bootstrap=50, progress=False,
                      models=["unimodal(hog)"])
    got = run_bench("fer2013", ck, eval_corpus="ckplus", face_run=str(run))
    row = got["finetune_face (run)"]
    assert row["n_test"] == 40 and got["ensemble(finetune_face+cnn)"]["n_test"] == 40
    assert not (tmp_path / "ck" / "fer2013" / "runs" / "finetune_face").exists()  # scored, not trained again
    # several finished runs (seeds of one recipe): one row, their probabilities averaged; twice the same
    # run is that run
    ck2 = BenchOptions(data=data_root, out=tmp_path / "ck2", limit=40, max_epochs=1, bootstrap=50, progress=False,
                       models=["unimodal(hog)"])
    two = run_bench("fer2013", ck2, eval_corpus="ckplus", face_run=f"{run},{run}")
    mean = two["finetune_face (2 networks, mean)"]
    assert mean["n_test"] == 40 and mean["accuracy"] == row["accuracy"] and mean["weighted_f1"] == row["weighted_f1"]
