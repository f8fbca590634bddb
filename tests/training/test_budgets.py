"""Epoch budgets read off one run (train.budgets / train.replay_from, the grid's share_budgets): the
k-epoch weights kept by a longer run are exactly those a run of k epochs keeps, early-stopped or not."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from emofuse.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig, validate
from emofuse.corpora.base import Manifest
from emofuse.training.grid import grid_runs
from emofuse.training.run import train_run
from tests.training.cached import toy_manifest, write_features


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("budgets")
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 3, n)
    split = np.where(np.arange(n) < 120, "train", np.where(np.arange(n) < 160, "val", "test"))
    ids = toy_manifest(root / "manifest.csv", y, split)["id"].tolist()
    centres = rng.normal(size=(3, 6))
    write_features(root / "cache", "toy", "a", ids, centres[y] + 2.0 * rng.normal(size=(n, 6)))
    write_features(root / "cache", "toy", "t", ids, centres[y, :4] + 2.0 * rng.normal(size=(n, 4)))
    return root


def _run(root, name, epochs, patience, **train) -> RunConfig:
    return RunConfig(
        name=name,
        data=DataConfig(manifest=str(root / "manifest.csv"), cache=str(root / "cache"),
                        features={"audio": "a", "text": "t"}, batch_size=16),
        model=ModelConfig(name="early", params={"hidden": 16}),
        train=TrainConfig(max_epochs=epochs, patience=patience, lr=3e-3, progress=False, logger="none", **train),
        out=str(root / "runs"),
    )


def _probs(root, name) -> np.ndarray:
    df = pd.read_csv(root / "runs" / name / "predictions.csv")
    return df[[c for c in df.columns if c.startswith("p_")]].to_numpy()


@pytest.mark.parametrize("patience", [20, 1])  # 1: early stopping ends the long run before its last budget
def test_a_replayed_budget_is_the_run_of_that_budget(corpus, patience):
    long = train_run(_run(corpus, f"long-p{patience}", 12, patience, budgets=[3, 7, 10, 12]))
    for k in (3, 7, 10):  # patience 1: the long run stopped at epoch 8 (seen), before budget 10
        alone = train_run(_run(corpus, f"alone{k}-p{patience}", k, patience))
        read = train_run(_run(corpus, f"read{k}-p{patience}", k, patience,
                              replay_from=str(corpus / "runs" / f"long-p{patience}")))
        assert read["test"] == alone["test"] and read["val"] == alone["val"]
        assert read["units"][0]["best_epoch"] == alone["units"][0]["best_epoch"]
        assert read["units"][0]["epochs_run"] == alone["units"][0]["epochs_run"]
        np.testing.assert_array_equal(_probs(corpus, f"read{k}-p{patience}"), _probs(corpus, f"alone{k}-p{patience}"))
        assert read["replayed_from"].endswith(f"long-p{patience}")
        assert 0 < read["units"][0]["fit_time_s"] <= long["units"][0]["fit_time_s"]
    if patience == 20:  # the budgets differ: otherwise this test could not tell them apart
        assert json.loads((corpus / "runs" / "long-p20" / "budgets" / "ep3.json").read_text())["best_epoch"] <= 2
        assert long["units"][0]["epochs_run"] == 12
    else:
        assert long["units"][0]["epochs_run"] < 10, "no early stop before a budget: the case is not tested"


def test_budgets_refuse_what_depends_on_the_budget(corpus, tmp_path):
    with pytest.raises(ValueError, match="schedule depends on the budget"):
        train_run(_run(corpus, "lin", 4, 4, budgets=[2, 4], lr_schedule="linear"))
    with pytest.raises(FileNotFoundError, match="kept none"):
        train_run(_run(corpus, "nothing", 2, 2, replay_from=str(tmp_path / "absent")))


def test_the_grid_trains_the_longest_budget_and_replays_the_others():
    base = {"name": "g", "manifest": "m.csv", "cache": "c", "out": "runs/g", "epochs": [2, 10, 100],
            "candidates": {"audio": ["a"], "text": ["t"]}, "fusion_sets": ["AT"], "top_n": [1],
            "model": {"name": "early"}}
    ranking = {"audio": [{"encoder": "a"}], "text": [{"encoder": "t"}]}
    runs = {r.name: r.train for r in grid_runs(validate(GridConfig, base), ranking)}
    assert runs["AT-top1-ep100"].budgets == [2, 10, 100] and not runs["AT-top1-ep100"].replay_from
    assert runs["AT-top1-ep2"].replay_from.endswith("AT-top1-ep100") and runs["AT-top1-ep10"].max_epochs == 10
    separate = {r.name: r.train for r in grid_runs(validate(GridConfig, base | {"share_budgets": False}), ranking)}
    assert all(not t.budgets and not t.replay_from for t in separate.values())
    warm = validate(GridConfig, base | {"train": {"warmup": 0.1}})  # the budget changes the warm-up: separate
    assert all(not t.replay_from for t in (r.train for r in grid_runs(warm, ranking)))


def test_a_finished_run_is_stale_when_its_features_changed(corpus, tmp_path):
    """A grid resumes by keeping finished runs; one trained on features the cache has since replaced
    (an encoder's defaults changed, another decoding) is trained again, not kept."""
    import shutil

    from emofuse.training.finished import finished_run

    root = tmp_path / "copy"
    shutil.copytree(corpus, root, ignore=shutil.ignore_patterns("runs"))
    run = _run(root, "r", 2, 2)
    m = train_run(run)
    assert finished_run(run) == m
    # a config field added since (here: written without train.budgets), at its default: the same run
    import yaml

    path = root / "runs" / "r" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["train"]["budgets"]
    path.write_text(yaml.safe_dump(saved))
    assert finished_run(run) == m
    ids = Manifest.load(root / "manifest.csv").df["id"].tolist()
    time.sleep(1.1)  # "newest" is by the entry's updated time, in whole seconds
    write_features(root / "cache", "toy", "a", ids, np.zeros((len(ids), 5)))  # "a" again, newer, another config
    assert finished_run(run) is None


def test_a_fit_writes_its_learning_curve(corpus):
    # history.csv: one row per epoch run, train loss and validation metrics; the epoch kept is the best
    # one by the monitored metric; curves.png beside it. A replayed budget trained nothing: no curve.
    m = train_run(_run(corpus, "curve", 9, 3))
    unit = corpus / "runs" / "curve"
    hist = pd.read_csv(unit / "history.csv")
    (info,) = m["units"]
    assert list(hist["epoch"]) == list(range(1, info["epochs_run"] + 1))
    assert {"train_loss", "val_loss", "val_weighted_f1", "val_accuracy"} <= set(hist.columns)
    assert hist["train_loss"].notna().all() and (hist["step"].diff().dropna() > 0).all()
    monitor = TrainConfig().monitor
    kept = hist.loc[hist[monitor].idxmax(), "epoch"]  # the first of equal bests, as BestWeights keeps
    assert kept == info["best_epoch"] + 1
    assert hist.loc[hist["epoch"] == kept, "val_weighted_f1"].item() == pytest.approx(m["val"]["weighted_f1"], abs=1e-6)
    assert (unit / "curves.png").stat().st_size > 5000
    train_run(_run(corpus, "curve-long", 6, 20, budgets=[3, 6]))
    train_run(_run(corpus, "curve-read", 3, 20, replay_from=str(corpus / "runs" / "curve-long")))
    assert (corpus / "runs" / "curve-long" / "history.csv").is_file()
    assert not (corpus / "runs" / "curve-read" / "history.csv").exists()
