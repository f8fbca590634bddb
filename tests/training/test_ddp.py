"""Distributed training through Lightning (train.devices, train.num_nodes, train.strategy): two CPU
processes (ddp over gloo) train the attention fusion as well as one; process 0 alone writes the run;
fine-tuning's length-grouped sampler is sharded across the processes; llama_topn trains.

Lightning's ddp starts the other processes by re-running the command, so the distributed runs go
through the CLI (or a script) in a subprocess, never in pytest's own process."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from emofuse.config import ConfigError, RunConfig, TrainConfig, load_config
from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.labels import LabelSet
from emofuse.training import run
from tests.training.cached import write_features

N = {"train": 180, "val": 60, "test": 60}
WORDS = ("I am so happy today", "she was angry and sad", "the table is brown")  # one sentence per class
DDP = ["train.devices=2", "train.strategy=ddp"]


def _corpus(root: Path) -> Path:
    """3 classes; three inputs (audio 8-d, text 12-d, video 6-d) each weakly informative, so that fusing
    them matters; text a class's sentence, for fine-tuning."""
    rng = np.random.default_rng(0)
    labels = LabelSet("toy3", ("angry", "happy", "sad"))
    split = np.repeat(list(N), list(N.values()))
    y = rng.integers(0, 3, len(split))
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": f"u{i:04d}", "split": s, "fold": -1, "label": labels.classes[y[i]],
                                                 "text": f"{WORDS[y[i]]} {i}"} for i, s in enumerate(split)]
    Manifest("toy", labels, pd.DataFrame(rows, columns=MANIFEST_COLUMNS), {"synthetic": True}).save(root / "manifest.csv")
    for name, dim in (("a", 8), ("t", 12), ("v", 6)):
        x = rng.normal(size=(3, dim))[y] * 0.8 + rng.normal(size=(len(y), dim))
        write_features(root / "cache", "toy", name, [r["id"] for r in rows], x)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _corpus(tmp_path_factory.mktemp("ddp"))


def _config(root: Path, name: str, model: str, params: dict, features: dict, out: Path, **train) -> Path:
    cfg = {"name": name,
           "data": {"manifest": str(root / "manifest.csv"), "cache": str(root / "cache"), "features": features,
                    "batch_size": 16},
           "model": {"name": model, "params": params},
           "train": {"max_epochs": 30, "patience": 8, "lr": 3e-3, "progress": False, "logger": "none", **train},
           "out": str(out)}
    path = out / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _launch(*cmd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """A command in a fresh process (no rank variables inherited), as a user would start it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env |= {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, *cmd], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _steps_per_epoch(n: int, batch: int, processes: int) -> int:
    return math.ceil(math.ceil(n / processes) / batch)


def test_distributed_keys_from_the_command_line(tmp_path):
    path = _config(tmp_path, "k", "attention", {}, {"audio": "a"}, tmp_path)
    t = load_config(RunConfig, path, DDP + ["train.num_nodes=2"]).train
    assert (t.devices, t.num_nodes, t.strategy) == (2, 2, "ddp")
    assert load_config(RunConfig, path, ["train.devices=auto"]).train.devices == "auto"
    assert TrainConfig().devices == 1 and TrainConfig().strategy == "auto"
    with pytest.raises(ConfigError, match="unknown strategy 'dpp'; valid: auto, ddp"):
        load_config(RunConfig, path, ["train.strategy=dpp"])
    with pytest.raises(ConfigError, match="use ddp"):
        load_config(RunConfig, path, ["train.strategy=ddp_spawn"])


def test_two_processes_train_as_one_does(corpus, tmp_path):
    path = _config(corpus, "fusion", "attention", {"hidden": 32, "dropout": 0.3},
                   {"audio": "a", "text": "t", "video": "v"}, tmp_path)
    one = run.train_run(load_config(RunConfig, path, ["name=one"]))
    proc = _launch("-m", "emofuse.cli", "train", str(path), "--set", "name=two", *(a for s in DDP for a in ("--set", s)))
    two_dir = tmp_path / "two"
    two = json.loads((two_dir / "metrics.json").read_text())
    assert "two: test accuracy" in proc.stdout

    assert one["units"][0]["processes"] == 1 and two["units"][0]["processes"] == 2
    assert one["test"]["weighted_f1"] > 0.6  # learnable, so that the comparison means something
    assert abs(two["test"]["weighted_f1"] - one["test"]["weighted_f1"]) <= 0.05, (one["test"], two["test"])
    for m, processes in ((one, 1), (two, 2)):
        u = m["units"][0]
        # each process fits on its half of the training rows: half the optimiser steps per epoch
        assert u["best_step"] == (u["best_epoch"] + 1) * _steps_per_epoch(N["train"], 16, processes)
        # the validation metric early stopping saw is the whole split's (gathered from both
        # processes), the one process 0 scores when it predicts val with the kept weights
        assert u["at_best_epoch"]["val_weighted_f1"] == pytest.approx(u["val"]["weighted_f1"], abs=1e-6)
    # process 0 predicted the whole test split, each row once, and the run folder is the usual one
    assert sorted(pd.read_csv(two_dir / "predictions.csv")["id"]) == [f"u{i:04d}" for i in range(240, 300)]
    assert sorted(p.name for p in two_dir.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_other_processes_train_but_write_nothing(corpus, tmp_path, monkeypatch):
    path = _config(corpus, "rank1", "attention", {}, {"audio": "a"}, tmp_path / "runs", seeds=[0, 1])
    fits = []

    def fit_only(cfg, data, plan, seed, *rest, **kw):  # what _fit_one returns on a process other than 0
        fits.append(seed)
        return None, None, None, None, {"best_epoch": 3}

    monkeypatch.setattr(run, "process_rank", lambda train: 1)
    monkeypatch.setattr(run, "_fit_one", fit_only)
    assert run.train_run(load_config(RunConfig, path)) is None  # no process group here: nothing to receive
    assert fits == [0, 1]  # every unit's fit, in order, as process 0 runs them
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["rank1.yaml"]  # no run folder


def test_fine_tuning_and_llama_topn_on_two_processes(corpus, tmp_path):
    from tests.features.tiny_hf import build

    bert = build("bert", tmp_path / "bert")
    ft = _config(corpus, "ft", "finetune_text", {"encoder": f"hf:{bert}", "max_length": 16}, {"text": "raw"},
                 tmp_path, max_epochs=1, lr=1e-3)
    llama = _config(corpus, "llama", "llama_topn", {"backbone": "tiny", "tiny_hidden": 32, "tiny_layers": 2,
                                                    "lora_r": 0}, {"audio": "a", "text": "t", "video": "v"},
                    tmp_path, max_epochs=2)
    script = tmp_path / "two.py"  # train_run from a script: every process runs the script
    script.write_text(
        "import json, sys\n"
        "from emofuse.config import RunConfig, load_config\n"
        "from emofuse.training.run import train_run\n"
        f"for path in sys.argv[1:]:\n"
        f"    m = train_run(load_config(RunConfig, path, {DDP!r}))\n"
        "    sys.stdout.write('RESULT ' + json.dumps({'name': m['name'], 'test': m['test']}) + '\\n')\n"
        "    sys.stdout.flush()\n")
    proc = _launch(str(script), str(ft), str(llama))
    # two processes share the pipe: each result is one write (atomic below the pipe's 4 KB), read wherever it lands
    dec = json.JSONDecoder()
    results = [dec.raw_decode(proc.stdout, m.end())[0] for m in re.finditer(r"RESULT ", proc.stdout)]
    assert len(results) == 4, proc.stdout[-3000:] + proc.stderr[-3000:]
    by_name = {}
    for r in results:
        by_name.setdefault(r["name"], []).append(r)
    assert all(len(v) == 2 and v[0] == v[1] for v in by_name.values()), by_name  # every process: process 0's

    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    u = m["units"][0]
    assert u["processes"] == 2
    # the length-grouped sampler was sharded: each process took half of every epoch's rows
    assert u["best_step"] == (u["best_epoch"] + 1) * _steps_per_epoch(N["train"], 16, 2)
    assert (tmp_path / "ft" / "encoder").is_dir()  # the fine-tuned encoder, saved by process 0
    assert len(pd.read_csv(tmp_path / "ft" / "predictions.csv")) == N["test"]
    m = json.loads((tmp_path / "llama" / "metrics.json").read_text())
    assert m["units"][0]["processes"] == 2 and len(pd.read_csv(tmp_path / "llama" / "predictions.csv")) == N["test"]


def test_sweeps_grids_and_ablations_refuse_a_distributed_run(corpus, tmp_path):
    """They write their own tables around the runs, in every process ddp would start: refused, with
    the command that does train on several devices."""
    path = _config(corpus, "multi", "attention", {}, {"audio": "a"}, tmp_path / "runs")
    cfg = load_config(RunConfig, path, DDP)
    with pytest.raises(ValueError, match=r"a sweep trains one process per run.*emofuse train CONFIG --set train.devices=N"):
        run.train_run(cfg, one_process_as="a sweep")
    assert not (tmp_path / "runs" / "multi").exists()
