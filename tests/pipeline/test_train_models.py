"""Every model trains through the one loop on the demo corpus's cached features, above chance;
the same seed gives the same metrics; cross-validation and several seeds give mean ± std; the
MER2025 grid renders its table."""

from __future__ import annotations

import json

import pytest

from emofuse.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig
from emofuse.training.run import train_run

FEATS = {"audio": "egemaps", "text": "minilm", "video": "fer2013"}
CHANCE = 1 / 6


def _cfg(out, name, model, params=None, features=FEATS, sequence=False, **train):
    demo = out
    return RunConfig(
        name=name,
        data=DataConfig(manifest=str(demo / "manifest.csv"), cache=str(demo / "cache"), features=features, sequence=sequence),
        model=ModelConfig(name=model, params=params or {}),
        train=TrainConfig(**({"max_epochs": 40, "patience": 10, "progress": False, "logger": "none"} | train)),
        out=str(demo / "test-runs"),
    )


@pytest.mark.parametrize("model,params", [
    ("early", {}),
    ("late", {}),
    ("attention", {}),
    ("llama_topn", {"backbone": "tiny", "tiny_hidden": 32, "tiny_layers": 2, "lora_r": 0}),
])
def test_fusion_models_train_above_chance(demo_run, model, params):
    out, _ = demo_run
    m = train_run(_cfg(out, f"t-{model}", model, params))
    assert m["test"]["accuracy"] > CHANCE + 0.25, m["test"]


def test_mer_han_trains_on_sequences_above_chance(demo_run):
    from emofuse.corpora.base import Manifest
    from emofuse.features.extract import extract

    out, _ = demo_run
    extract(Manifest.load(out / "manifest.csv"), ["mfcc"], out / "cache", progress=False)
    m = train_run(_cfg(out, "t-mer-han", "mer_han", {"hidden": 32, "heads": 2},
                       features={"audio": "mfcc", "text": "minilm"}, sequence=True, max_epochs=15))
    assert m["test"]["accuracy"] > CHANCE + 0.2, m["test"]
    assert m["units"][0]["n"]["train"] > 100


def test_same_seed_same_metrics(demo_run):
    out, _ = demo_run
    a = train_run(_cfg(out, "det-a", "attention", max_epochs=5))
    b = train_run(_cfg(out, "det-b", "attention", max_epochs=5))
    assert a["test"] == b["test"]
    assert a["units"][0]["best_epoch"] == b["units"][0]["best_epoch"]


def test_cross_validation_and_seeds_give_mean_and_std(demo_run):
    out, _ = demo_run
    m = train_run(_cfg(out, "cv", "early", cross_validation=True, seeds=[0, 1], max_epochs=3))
    folds = {u["fold"] for u in m["units"]}
    assert len(folds) == 5 and len(m["units"]) == 10
    assert m["test"]["accuracy_std"] > 0
    # test folds cover every labelled row exactly once in the pooled predictions
    rows = (out / "test-runs" / "cv" / "predictions.csv").read_text().splitlines()[1:]
    ids = [r.split(",")[0] for r in rows]
    assert len(ids) == len(set(ids)) == 360


def test_grid_ranks_on_validation_and_renders_table(demo_run, monkeypatch):
    import emofuse.training.run as run_mod
    from emofuse.training.grid import run_grid

    out, _ = demo_run
    cfg = GridConfig(
        name="g", manifest=str(out / "manifest.csv"), cache=str(out / "cache"),
        candidates={"audio": ["egemaps", "mfcc"], "text": ["minilm"], "video": ["fer2013"]},
        fusion_sets=["AV", "AT"], top_n=[1, 2], epochs=[1, 2],
        model=ModelConfig(name="llama_topn", params={"backbone": "tiny", "tiny_hidden": 32, "lora_r": 0}),
        train=TrainConfig(progress=False, logger="none"),
        ranking_train=TrainConfig(max_epochs=5, progress=False, logger="none"),
        out=str(out / "grid"),
    )
    table = run_grid(cfg, progress=False).read_text()
    ranking = json.loads((out / "grid" / "ranking" / "ranking.json").read_text())
    assert [r["val_weighted_f1"] for r in ranking["audio"]] == sorted((r["val_weighted_f1"] for r in ranking["audio"]), reverse=True)
    assert "| Fusion | Top | Audio | Text | Video |" in table and "1 ep F1" in table and "2 ep Acc" in table
    assert "| AV | 2 | egemaps, mfcc |" in table or "| AV | 2 | mfcc, egemaps |" in table
    assert "synthetic" in table

    # a grid run again resumes: every cell and baseline finished with the same config is kept, none trained
    def no_training(cfg, **kw):
        raise AssertionError(f"{cfg.name} trained again")

    monkeypatch.setattr(run_mod, "train_run", no_training)
    assert run_grid(cfg, progress=False).read_text() == table
    # a changed config is not "finished": the cell trains again
    changed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 2e-3})})
    with pytest.raises(AssertionError, match="trained again"):
        run_grid(changed, progress=False)
