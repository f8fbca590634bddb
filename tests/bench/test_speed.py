"""`emofuse speed`: each sub-command runs on a tiny slice, both sides, and prints its figures (never
asserted: shared machines are noisy). What is checked is that both sides ran on the same items and
that the line a script reads, `ratio: X`, comes last."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from emofuse.cli import app
from tests.features.tiny_hf import build

runner = CliRunner()


def _run(*args: str) -> str:
    res = runner.invoke(app, ["speed", *args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    lines = res.output.strip().splitlines()
    assert re.fullmatch(r"ratio: \d+\.\d\d", lines[-1]), lines[-1]
    return res.output


def test_speed_train_prints_seconds_and_ratio():
    out = _run("train", "--n", "400", "--epochs", "2", "--batch-size", "64")
    assert "plain loop: 2 epochs x 320 rows" in out
    assert re.search(r"^seconds: \d+\.\d$", out, re.M)


def test_speed_extract_builtin_and_hf_text(demo_run, tmp_path):
    manifest = demo_run[0] / "manifest.csv"
    out = _run("extract", "--encoder", "mfcc", "--manifest", str(manifest), "--limit", "6")
    assert re.search(r"plain loop \(same decoding.*: 6 items", out)
    assert "emofuse extract: 6 items" in out
    folder = build("bert", tmp_path / "bert")
    out = _run("extract", "--encoder", f"hf:{folder}@max_length=48", "--manifest", str(manifest), "--limit", "20",
               "--device", "cpu")
    assert re.search(r"plain loop \(transformers.*: 20 items", out)
    assert "emofuse extract: 20 items" in out


def test_speed_finetune_same_rows_both_sides(demo_run, tmp_path):
    folder = build("bert", tmp_path / "bert")
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(f"""name: ft
data: {{manifest: unused.csv, features: {{text: raw}}, batch_size: 8}}
model: {{name: finetune_text, params: {{encoder: "hf:{folder}", max_length: 48}}}}
train: {{max_epochs: 3, lr: 1.0e-4, lr_schedule: linear, warmup: 0.1, gradient_clip: 1.0, mse_weight: 0.0,
        monitor: val_weighted_f1}}
""")
    out = _run("finetune", "--config", str(cfg), "--manifest", str(demo_run[0] / "manifest.csv"), "--steps", "3")
    rows = re.search(r"(\d+) training rows", out).group(1)
    assert int(rows) >= 20
    assert "plain loop (transformers" in out and "emofuse train_run" in out


def test_speed_video_reports_peak_memory(demo_run):
    out = _run("video", "--minutes", "0.05", "--model", str(demo_run[0] / "runs" / "fusion-attention"))
    assert re.search(r"^peak_rss_gb: \d+\.\d\d$", out, re.M)
    assert "0 errors" in out


def test_speed_video_without_a_model_says_what_to_do(tmp_path):
    res = runner.invoke(app, ["speed", "video", "--minutes", "0.05", "--model", str(tmp_path / "none")])
    assert res.exit_code != 0
    assert "emofuse demo" in res.output


def test_speed_face_same_faces_both_sides(tmp_path):
    from tests.models.test_finetune_face import toy_faces

    manifest = toy_faces(tmp_path, {"train": 40, "val": 10, "test": 10})
    out = _run("face", "--manifest", str(manifest), "--n-train", "40", "--epochs", "1", "--width", "4")
    assert "40 training faces, 10 validation, 10 test" in out
    assert re.search(r"plain loop \(faces decoded once.*= [\d.]+ training faces/s", out)
    assert re.search(r"emofuse train_run .*= [\d.]+ training faces/s", out)
    res = runner.invoke(app, ["speed", "face", "--manifest", str(tmp_path / "nope.csv")])
    assert res.exit_code != 0
