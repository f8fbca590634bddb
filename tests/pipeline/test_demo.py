"""The main job end to end on the full-size synthetic demo corpus, as `make demo` runs it."""

from __future__ import annotations

import json

from emofuse.scoring.metrics import METRIC_NAMES


def test_demo_writes_report_metrics_manifest_and_picture(demo_run):
    out, results = demo_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"unimodal-audio", "unimodal-text", "unimodal-video", "fusion-attention"}
    for name, m in metrics.items():
        assert set(m) == set(METRIC_NAMES)
        assert all(0.0 <= v <= 1.0 for v in m.values()), name
    report = (out / "report.md").read_text()
    assert "SYNTHETIC" in report and "fusion-attention" in report
    assert (out / "manifest.csv").is_file() and (out / "confusion.png").stat().st_size > 5000
    run = out / "runs" / "fusion-attention"
    for f in ("config.yaml", "labels.json", "encoders.json", "versions.json", "model.safetensors",
              "standardiser.safetensors", "metrics.json", "predictions.csv"):
        assert (run / f).is_file(), f
    header = (run / "predictions.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["id", "true", "predicted"] and "w_video" in header


def test_fusion_beats_best_unimodal_by_five_points(demo_run):
    _, results = demo_run
    best_uni = max(v["weighted_f1"] for k, v in results.items() if k.startswith("unimodal-"))
    assert results["fusion-attention"]["weighted_f1"] >= best_uni + 0.05, results


def test_each_modality_is_informative_but_unreliable(demo_run):
    _, results = demo_run
    for m in ("audio", "text", "video"):
        wf1 = results[f"unimodal-{m}"]["weighted_f1"]
        assert 0.35 < wf1 < 0.9, (m, wf1)  # chance is 1/6; corrupted clips cap each modality


def test_rerun_reuses_corpus_and_cache(demo_run, capsys):
    from emofuse.features.extract import extract
    from emofuse.corpora.base import Manifest

    out, _ = demo_run
    m = Manifest.load(out / "manifest.csv")
    entries = extract(m, ["minilm", "egemaps", "fer2013"], out / "cache", progress=False)
    assert all(e.stats["computed"] == 0 for e in entries)
