"""The MELD-style system on the demo corpus with tiny random models: fine-tuned text (BERT) and
audio (wav2vec2) runs, CLIP zero-shot video, late fusion of the runs with weights fitted on
validation; the fine-tuned encoder reused as a feature encoder; sweeps (grid and Optuna); compare."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from emofuse.cli import app
from emofuse.config import TrainConfig
from tests.features.tiny_hf import build
from tests.models.tiny_media import build_clip, build_speech

QUIET = {"progress": False, "logger": "none"}


@pytest.fixture(scope="module")
def system(demo_run, tmp_path_factory):
    from emofuse.training.late_runs import LateRunsConfig, run_late_runs

    out, _ = demo_run
    tmp = tmp_path_factory.mktemp("late-runs")
    bert, w2v, clip = build("bert", tmp / "bert"), build_speech("wav2vec2", tmp / "w2v"), build_clip(tmp / "clip")
    train = {"max_epochs": 2, "patience": 2, "lr": 1e-3, "mse_weight": 0.0, "monitor": "val_weighted_f1", **QUIET}
    cfg = LateRunsConfig(
        name="demo-late-runs",
        manifest=str(out / "manifest.csv"),
        members={
            "text": {"data": {"features": {"text": "raw"}, "batch_size": 32},
                     "model": {"name": "finetune_text", "params": {"encoder": f"hf:{bert}", "max_length": 32}},
                     "train": {**train, "class_weights": "sqrt", "lr_schedule": "linear", "warmup": 0.1}},
            "audio": {"data": {"features": {"audio": "raw"}, "batch_size": 16, "raw": {"max_audio_s": 2.0}},
                      "model": {"name": "finetune_audio", "params": {"encoder": f"hf:{w2v}"}},
                      "train": {**train, "max_epochs": 1, "accumulate_grad_batches": 2}},
            "video": {"data": {"features": {"video": "raw"}, "raw": {"every_n": 10, "face_size": 32}},
                      "model": {"name": "clip_zeroshot", "params": {"model": f"hf:{clip}", "label_set": "mer6"}},
                      "train": QUIET},
        },
        fusion={"weight_step": 0.1, "prior": {"text": 0.5, "audio": 0.25, "video": 0.25}},
        out=str(tmp / "runs"),
    )
    return cfg, run_late_runs(cfg, progress=False)


def test_late_fusion_of_runs(system):
    from pathlib import Path

    cfg, m = system
    out = Path(cfg.out) / cfg.name
    w = m["fusion_weights"]
    assert set(w) == {"text", "audio", "video"} and abs(sum(w.values()) - 1) < 1e-9
    # the simplex includes each member alone, so the fitted fusion is at least as good on validation
    assert m["val"]["weighted_f1"] >= max(mm["val"]["weighted_f1"] for mm in m["members"].values()) - 1e-12
    table = (out / "table.md").read_text()
    assert all(f"| {k} |" in table for k in ("text", "audio", "video")) and "late fusion" in table
    pred = pd.read_csv(out / "predictions.csv")
    assert {"w_text", "w_audio", "w_video", "p_happy"} <= set(pred.columns)
    members = out / "members"
    video = json.loads((members / "demo-late-runs-video" / "metrics.json").read_text())
    assert video["units"][0]["epochs_run"] == 0  # zero-shot: nothing trained
    assert (members / "demo-late-runs-text" / "encoder" / "config.json").is_file()
    assert (members / "demo-late-runs-audio" / "encoder" / "config.json").is_file()


def test_members_are_reused_unless_retrain(system):
    from pathlib import Path

    from emofuse.training.late_runs import run_late_runs

    cfg, first = system
    done = Path(cfg.out) / cfg.name / "members" / "demo-late-runs-text" / "metrics.json"
    stamp = done.stat().st_mtime_ns
    again = run_late_runs(cfg, progress=False)
    assert done.stat().st_mtime_ns == stamp and again["test"] == first["test"]


def test_finetuned_encoder_feeds_a_feature_fusion(system, demo_run):
    from pathlib import Path

    from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from emofuse.corpora.base import Manifest
    from emofuse.features.extract import extract
    from emofuse.training.run import train_run

    cfg, _ = system
    out, _ = demo_run
    text_run = Path(cfg.out) / cfg.name / "members" / "demo-late-runs-text"
    (entry,) = extract(Manifest.load(out / "manifest.csv"), [f"finetuned:{text_run}"], out / "cache", progress=False)
    assert entry.name == "ft-demo-late-runs-text"
    m = train_run(RunConfig(
        name="ft-fusion",
        data=DataConfig(manifest=str(out / "manifest.csv"), cache=str(out / "cache"),
                        features={"text": "ft-demo-late-runs-text", "audio": "egemaps"}),
        model=ModelConfig(name="late"), train=TrainConfig(max_epochs=5, **QUIET), out=str(out / "test-runs")))
    assert m["test"]["accuracy"] > 1 / 6


def test_fuse_cli_refuses_a_bad_member(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text(yaml.safe_dump({"name": "x", "manifest": "m.csv", "members": {
        "text": {"model": {"name": "finetune_text"}, "data": {"features": {"text": "raw"}}, "train": {"lr": "fast"}},
        "video": {"run": "somewhere"}}}))
    r = CliRunner().invoke(app, ["fuse", str(p)])
    assert r.exit_code != 0 and "member 'text'" in r.output and "train.lr" in r.output


def _sweep_yaml(tmp_path, demo, **extra) -> str:
    base = {"name": "head", "data": {"manifest": str(demo / "manifest.csv"), "cache": str(demo / "cache"),
                                     "features": {"text": "minilm"}},
            "model": {"name": "unimodal", "params": {"hidden": 32}},
            "train": {"max_epochs": 4, "patience": 4, "monitor": "val_weighted_f1", **QUIET}}
    cfg = {"name": "s", "base": base, "grid": {"data.batch_size": [16, 64], "train.lr": [1e-2, 1e-4]},
           "final_seeds": [0, 1], "out": str(tmp_path / "sweeps"), **extra}
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def test_grid_sweep_selects_on_validation_and_reruns_the_best(demo_run, tmp_path):
    out, _ = demo_run
    r = CliRunner().invoke(app, ["sweep", _sweep_yaml(tmp_path, out)])
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "sweeps" / "s" / "sweep.json").read_text())
    trials = result["trials"]
    assert [t["values"] for t in trials] == [{"data.batch_size": b, "train.lr": lr} for b in (16, 64) for lr in (1e-2, 1e-4)]
    best = max(trials, key=lambda t: t["val_weighted_f1"])
    assert result["best"] == best["trial"]
    table = (tmp_path / "sweeps" / "s" / "table.md").read_text()
    assert ("| batch size | learning rate | weight decay | train loss | val loss | accuracy | F1 | precision | recall "
            "| epoch kept | fit time (s) |") in table
    # weight decay is not swept: every row shows the base config's value (TrainConfig's default here)
    assert all(t["settings"]["train.weight_decay"] == TrainConfig().weight_decay for t in trials)
    assert all(t["settings"]["data.batch_size"] == t["values"]["data.batch_size"] for t in trials)
    assert table.count("★ |") == 1 and "re-run over seeds 0, 1" in table
    final = json.loads((tmp_path / "sweeps" / "s" / "best" / "metrics.json").read_text())
    assert [u["seed"] for u in final["units"]] == [0, 1]
    assert all(t["train_loss"] is not None and t["val_loss"] is not None for t in trials)
    # two trials on the same test ids: the significance test runs on them
    r = CliRunner().invoke(app, ["compare", trials[0]["run"], trials[1]["run"], "--n-boot", "300"])
    assert r.exit_code == 0 and "McNemar" in r.output


def test_optuna_sweep(demo_run, tmp_path):
    pytest.importorskip("optuna", reason="optuna is optional: pip install optuna")
    from emofuse.config import load_config
    from emofuse.training.sweep import SweepConfig, run_sweep

    out, _ = demo_run
    cfg = load_config(SweepConfig, _sweep_yaml(tmp_path, out, method="optuna", n_trials=3, final_seeds=[0],
                                               grid={"data.batch_size": [16, 64]},
                                               ranges={"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}))
    result = run_sweep(cfg, progress=False)
    assert len(result["trials"]) == 3 and all(1e-4 <= t["values"]["train.lr"] <= 1e-2 for t in result["trials"])
    # final_seeds [0] is the trials' own seed: the selected trial is the final run, not trained again
    assert result["final"]["run"] == next(t["run"] for t in result["trials"] if t["trial"] == result["best"])
    assert not (tmp_path / "sweeps" / "s" / "best").exists()
    assert "not repeated" in (tmp_path / "sweeps" / "s" / "table.md").read_text()


def test_sweep_config_errors(tmp_path, demo_run):
    from emofuse.config import ConfigError, load_config
    from emofuse.training.sweep import SweepConfig

    out, _ = demo_run
    with pytest.raises(ConfigError, match="ranges need method: optuna"):
        load_config(SweepConfig, _sweep_yaml(tmp_path, out, ranges={"train.lr": {"low": 1, "high": 2}}))
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(SweepConfig, _sweep_yaml(tmp_path, out, grid={"train.learning_rate": [1e-3]}))
