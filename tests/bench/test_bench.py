"""A small, fast slice of each real-data benchmark (a few dozen rows per split, two epochs): the
whole path runs and writes what it promises. The figures of such slices mean nothing; the
full-size figures are in the benchmark reports. Skipped, with the reason, without ../shared/data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emofuse.bench import run_bench
from emofuse.bench.driver import BenchOptions
from emofuse.scoring.metrics import METRIC_NAMES
from tests.conftest import need

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-cache")  # shared: the slices overlap


def _opts(data, out, cache, limit, models, baseline="linear") -> BenchOptions:
    return BenchOptions(data=data, out=out, cache=cache, limit=limit, max_epochs=2, models=models,
                        baseline=baseline, bootstrap=100, progress=False)


def _check(out, metrics: dict, rows: set[str], tasks: list[str]) -> None:
    assert rows <= set(metrics), sorted(metrics)
    for name, m in metrics.items():
        for k in METRIC_NAMES:
            # (a percentile interval need not hold the point: on a few dozen samples, resamples that
            # miss a rare class raise its macro mean)
            lo, hi = m[f"{k}_ci95"]
            assert 0.0 <= m[k] <= 1.0 and 0.0 <= lo <= hi <= 1.0, (name, k, m[k], lo, hi)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    report = (out / "report.md").read_text()
    assert "95% intervals" in report and "| model | kind | inputs |" in report
    for task in tasks:
        assert (out / task / "confusion.png").stat().st_size > 0 and (out / task / "per_class.csv").is_file()


def test_meld_text(data_root, tmp_path, cache):
    opts = _opts(need(data_root, "meld"), tmp_path, cache, 60, ["unimodal", "early+context3"])
    metrics = run_bench("meld-text", opts, context=3)
    _check(tmp_path, metrics, {"unimodal", "early+context3", "baseline-linear"}, ["meld-text"])
    assert "preceding utterances" in (tmp_path / "report.md").read_text()


def test_ravdess(data_root, tmp_path, cache):
    opts = _opts(need(data_root, "ravdess_speech"), tmp_path, cache, 24, ["unimodal"])
    metrics = run_bench("ravdess", opts)
    _check(tmp_path, metrics, {"ravdess8/unimodal", "ravdess7/baseline-linear-per-speaker"}, ["ravdess8", "ravdess7"])
    m8 = json.loads((tmp_path / "ravdess8" / "results.json").read_text())
    m7 = json.loads((tmp_path / "ravdess7" / "results.json").read_text())
    assert len(m8["classes"]) == 8 and "calm" not in m7["classes"] and len(m7["classes"]) == 7
    assert "Speaker-independent" in (tmp_path / "report.md").read_text()
    # no speed row selected: no speed-perturbed copies written, and no baseline trained on them
    assert not (tmp_path / "ravdess8" / "manifest-speed.csv").exists() and not any("speed" in k for k in metrics)


def test_fer2013(data_root, tmp_path, cache):
    opts = _opts(need(data_root, "fer2013_train"), tmp_path, cache, 70, ["unimodal(fer2013)", "unimodal(hog)"])
    metrics = run_bench("fer2013", opts)
    _check(tmp_path, metrics, {"unimodal(fer2013)", "unimodal(hog)", "fer2013-cnn", "baseline-linear-hog"}, ["fer2013"])
    report = (tmp_path / "report.md").read_text()
    assert "cannot be measured here" in report and "has seen" in report  # no claim on its own training images


def test_goemotions(data_root, tmp_path, cache):
    opts = _opts(need(data_root, "goemotions"), tmp_path, cache, 60, ["unimodal"])
    metrics = run_bench("goemotions", opts)
    _check(tmp_path, metrics, {"goemotions-ekman/unimodal", "goemotions-28/unimodal", "goemotions-28/baseline-linear"},
           ["goemotions-ekman", "goemotions-28"])
    assert "micro_f1" in metrics["goemotions-28/unimodal"]
    pred = (tmp_path / "goemotions-28" / "runs" / "unimodal" / "predictions.csv").read_text()
    assert len(pred.splitlines()) == 61


def test_paired(data_root, tmp_path, cache):
    for sub in ("meld", "ravdess_speech", "fer2013_train"):
        need(data_root, sub)
    opts = _opts(data_root, tmp_path, cache, 21, ["unimodal-audio", "unimodal-video", "attention-AVT", "llama_topn-AVT"],
                 baseline="none")
    metrics = run_bench("paired", opts, train_pairs=1, llm_backbone="tiny")
    _check(tmp_path, metrics, {"unimodal-audio", "unimodal-video", "attention-AVT", "llama_topn-AVT"}, ["paired"])
    report = (tmp_path / "report.md").read_text()
    assert "paired by class, not recorded together" in report and "optimistic" in report
    assert "MER-style results table" in report and (tmp_path / "paired" / "table.md").is_file()
    sources = (tmp_path / "paired" / "sources.csv").read_text().splitlines()
    assert sources[0] == "id,ravdess,meld,fer2013" and len(sources) > 21


def test_eval_data_takes_the_test_set_from_another_folder(data_root, tmp_path, cache):
    """--eval-data: other actors' clips (links into the shared folder, nothing copied) are the test
    set; all actors of --data train and validate."""
    src = need(data_root, "ravdess_speech")
    train_root, eval_root = tmp_path / "actors1-10", tmp_path / "actors11-12"
    for a in range(1, 13):
        folder = (train_root if a <= 10 else eval_root) / f"Actor_{a:02d}"
        folder.mkdir(parents=True)
        for wav in (src / folder.name).glob("*.wav"):
            (folder / wav.name).symlink_to(wav)
    opts = _opts(train_root, tmp_path / "out", cache, 24, ["unimodal"], baseline="none")
    opts.eval_data = eval_root
    run_bench("ravdess", opts)
    df = pd.read_csv(tmp_path / "out" / "ravdess8" / "manifest.csv", keep_default_na=False)
    assert set(df.loc[df.split == "test", "speaker"]) <= {"Actor_11", "Actor_12"}
    assert df.loc[df.split == "test", "id"].str.startswith("eval:").all()
    assert not set(df.loc[df.split != "test", "speaker"]) & {"Actor_11", "Actor_12"}
    # --data's own test actors (09, 10) joined training; its validation actors stay
    assert set(df.loc[df.split == "val", "speaker"]) <= {"Actor_07", "Actor_08"}


def test_a_run_over_seeds_is_chosen_by_the_seed_it_reports(data_root, tmp_path, cache):
    # test figures of a several-seed run are its first seed's; so must be the validation figure it is chosen by
    opts = _opts(need(data_root, "meld"), tmp_path, cache, 60, ["unimodal"])
    opts.seeds = [0, 1]
    metrics = run_bench("meld-text", opts, context=0)
    entry = json.loads((tmp_path / "meld-text" / "results.json").read_text())["results"]["unimodal"]
    run = json.loads((tmp_path / "meld-text" / "runs" / "unimodal" / "metrics.json").read_text())
    assert [u["seed"] for u in run["units"]] == [0, 1]
    assert entry["val"] == {k: run["units"][0]["val"][k] for k in METRIC_NAMES}
    assert entry["val"]["weighted_f1"] != run["val"]["weighted_f1"]  # the seeds' mean differs from seed 0's
    assert metrics["unimodal"]["weighted_f1"] == pytest.approx(run["units"][0]["test"]["weighted_f1"], abs=1e-6)
    assert entry["seeds"]["weighted_f1"][0] == pytest.approx(run["test"]["weighted_f1"])
