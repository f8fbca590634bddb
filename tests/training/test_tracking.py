"""Tracking (train.loggers): an MLflow run read back from its store has the config, every epoch's
metrics, the test metrics and the run folder's files; W&B offline writes its run folder; a sweep's
trials are children of one parent; a 2-process run logs once; a missing package is one line.

No network: MLflow writes a SQLite store under tmp, W&B runs offline (WANDB_MODE) with its folders
under tmp too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from emofuse.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, validate
from emofuse.training import tracking
from emofuse.training.run import train_run
from tests.training.cached import toy_manifest, write_features

EPOCHS = 3
REPORT = {"metrics.json", "predictions.csv", "confusion.png", "curves.png", "reliability.png", "config.yaml"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tracking")
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 3, n)
    split = np.where(np.arange(n) < 60, "train", np.where(np.arange(n) < 90, "val", "test"))
    ids = toy_manifest(root / "manifest.csv", y, split)["id"].tolist()
    write_features(root / "cache", "toy", "a", ids, rng.normal(size=(3, 6))[y] + rng.normal(size=(n, 6)))
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module (each test its own experiment): the database is made once."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """W&B offline and silent, every folder it writes under tmp; no tracking URI from the environment."""
    for k in ("MLFLOW_TRACKING_URI", "WANDB_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    wb = tmp_path / "wandb-home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for k in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(k, str(wb / k.lower()))


def _config(root: Path, name: str, out: Path, **train) -> dict:
    return {"name": name,
            "data": {"manifest": str(root / "manifest.csv"), "cache": str(root / "cache"), "features": {"audio": "a"},
                     "batch_size": 32},
            "model": {"name": "early", "params": {"hidden": 8}},
            # patience past the last epoch: every epoch runs, so the histories have EPOCHS points
            "train": {"max_epochs": EPOCHS, "patience": 10, "lr": 3e-3, "progress": False, **train},
            "out": str(out)}


def _runs(uri: str, experiment: str) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment])


def test_an_mlflow_run_holds_config_epochs_test_metrics_and_files(corpus, store, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    cfg = validate(RunConfig, _config(corpus, "one", tmp_path, loggers=["tensorboard", "csv", "mlflow"],
                                      mlflow_uri=store, experiment="single"))
    metrics = train_run(cfg)
    runs = _runs(store, "single")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["tags.mlflow.runName"] == "one" and run["status"] == "FINISHED"
    assert run["tags.emofuse.run_dir"] == str((tmp_path / "one").resolve())
    # the resolved config, keyed as --set takes it
    assert run["params.model.name"] == "early" and float(run["params.train.lr"]) == 3e-3
    assert run["params.data.features.audio"] == "a" and run["params.train.max_epochs"] == str(EPOCHS)
    client = mlflow.MlflowClient(store)
    for key in ("val_accuracy", "val_weighted_f1", "val_loss", "train_loss"):  # one point per epoch
        history = client.get_metric_history(run.run_id, key)
        assert len(history) == EPOCHS, (key, history)
        assert [m.step for m in history] == sorted({m.step for m in history})
    assert metrics["units"][0]["epochs_run"] == EPOCHS
    assert run["metrics.test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert run["metrics.test_weighted_f1"] == pytest.approx(metrics["test"]["weighted_f1"])
    files = {f.path for f in client.list_artifacts(run.run_id)}
    assert REPORT <= files, files
    assert not {"model.safetensors", "tb", "csv"} & files  # reports, not weights or the loggers' own folders
    # a local SQLite store keeps its artefacts beside it, never in the working folder
    assert (Path(store[len("sqlite:///"):]).parent / "artifacts" / run.run_id / "artifacts" / "metrics.json").is_file()
    # the other loggers listed wrote theirs as before: one version per unit
    assert (tmp_path / "one" / "csv" / "seed0" / "metrics.csv").is_file()
    assert any((tmp_path / "one" / "tb" / "seed0").glob("events.out.tfevents.*"))


def test_wandb_offline_writes_its_run_folder(corpus, tmp_path):
    pytest.importorskip("wandb")
    cfg = validate(RunConfig, _config(corpus, "wb", tmp_path, loggers=["wandb"], seeds=[0, 1], max_epochs=2))
    train_run(cfg)
    folders = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(folders) == 1, folders  # one W&B run for the run's two seeds
    (record,) = folders[0].glob("run-*.wandb")
    # W&B keeps an offline run as protobuf records (no reader in its public API): their keys are plain text
    data = record.read_bytes()
    for key in (b"seed0-val_accuracy", b"seed1-val_accuracy", b"test_accuracy", b"metrics.json", b"max_epochs"):
        assert key in data, key
    assert not (tmp_path / "wb" / "tb").exists()  # loggers: [wandb] only


def test_a_sweeps_trials_are_children_of_one_parent(corpus, store, tmp_path):
    pytest.importorskip("mlflow")
    from emofuse.training.sweep import SweepConfig, run_sweep

    base = _config(corpus, "base", tmp_path, loggers=["mlflow"], mlflow_uri=store, experiment="sweeps", max_epochs=1)
    sweep = SweepConfig(name="sw", base=base, grid={"train.lr": [1e-3, 3e-3]}, final_seeds=[0], out=str(tmp_path))
    run_sweep(sweep, progress=False)
    runs = _runs(store, "sweeps")
    assert len(runs) == 3
    parent = runs[runs["tags.mlflow.runName"] == "sw"].iloc[0]
    children = runs[runs["tags.mlflow.runName"] != "sw"]
    assert sorted(children["tags.mlflow.runName"]) == ["t00", "t01"]
    assert (children["tags.mlflow.parentRunId"] == parent.run_id).all()
    assert parent["tags.emofuse.kind"] == "sweep" and parent["status"] == "FINISHED"
    import mlflow

    assert "table.md" in {f.path for f in mlflow.MlflowClient(store).list_artifacts(parent.run_id)}


@pytest.mark.slow  # two processes start Python, torch, MLflow and W&B: ~30 s on 2 cores
def test_two_processes_log_once_from_process_0(corpus, store, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from tests.training.test_ddp import DDP, _launch

    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(_config(corpus, "ddp", tmp_path, loggers=["mlflow", "wandb"], mlflow_uri=store,
                                           experiment="ddp", max_epochs=2)))
    script = tmp_path / "two.py"  # every process runs the script (Lightning's ddp re-runs the command)
    script.write_text("import sys\nfrom emofuse.config import RunConfig, load_config\n"
                      "from emofuse.training.run import train_run\n"
                      f"train_run(load_config(RunConfig, sys.argv[1], {DDP!r}))\n")
    _launch(str(script), str(path))
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["units"][0]["processes"] == 2
    runs = _runs(store, "ddp")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    import mlflow

    history = mlflow.MlflowClient(store).get_metric_history(runs.iloc[0].run_id, "val_accuracy")
    assert len(history) == 2  # each epoch once: process 1 logged nothing
    assert len(list((tmp_path / "ddp" / "wandb").glob("offline-run-*"))) == 1


def test_a_missing_package_is_one_line_before_training(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails as if it were absent
    cfg = validate(RunConfig, _config(corpus, "absent", tmp_path, loggers=["tensorboard", "mlflow"]))
    with pytest.raises(tracking.MissingPackage) as e:
        train_run(cfg)
    assert str(e.value) == "train.loggers: mlflow needs the mlflow package: pip install 'emofuse[track]'"
    assert isinstance(e.value, ValueError)  # the CLI prints it as one line, as it does a wrong config value
    assert not (tmp_path / "absent" / "model.safetensors").exists()


def test_logger_settings(tmp_path, monkeypatch):
    assert TrainConfig().loggers == ["tensorboard"] and TrainConfig().logger == "tensorboard"
    with pytest.raises(ConfigError, match="Input should be 'tensorboard', 'csv', 'mlflow' or 'wandb'"):
        validate(TrainConfig, {"loggers": ["mlfow"]})
    # logger: none (existing configs) still turns everything off, and cannot be half-overridden
    assert validate(TrainConfig, {"logger": "none"}).loggers == ["tensorboard"]
    with pytest.raises(ConfigError, match="logger: none turns every logger off, but train.loggers lists mlflow"):
        validate(TrainConfig, {"logger": "none", "loggers": ["mlflow"]})
    plan = {"name": ""}
    assert tracking.loggers(RunConfig(name="x", data=DataConfig(manifest="m", features={}), model=ModelConfig(name="early"),
                                      train=TrainConfig(logger="none")), plan, 0, tmp_path / "tb", 0) == []
    # MLflow: the config's URI, else MLFLOW_TRACKING_URI, else runs/mlruns of the working folder
    monkeypatch.chdir(tmp_path)
    assert tracking.mlflow_uri(TrainConfig()) == f"sqlite:///{tmp_path / 'runs' / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert tracking.mlflow_uri(TrainConfig()) == "http://tracker:5000"
    assert tracking.mlflow_uri(TrainConfig(mlflow_uri="sqlite:///x.db")) == "sqlite:///x.db"
    # W&B: online only after a login; WANDB_MODE, when set, is wandb's own to read
    assert tracking.wandb_mode() is None
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert tracking.wandb_mode() == "offline"  # no netrc file at all
    (tmp_path / "netrc").write_text("machine example.org login u password p\n")
    assert tracking.wandb_mode() == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password key\n")
    assert tracking.wandb_mode() == "online"
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert tracking.wandb_mode() == "online"
