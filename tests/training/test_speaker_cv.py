"""train.cross_validation: speaker — the epoch budget chosen by speaker-grouped folds over the
training and validation speakers, then one refit on all of them, scored once on test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from emofuse.corpora.base import AUGMENTED, MANIFEST_COLUMNS, Manifest
from emofuse.labels import LabelSet
from emofuse.training.run import train_run
from tests.training.cached import write_features


def _corpus(root, speakers: bool = True, copies: bool = False):
    """12 speakers x 20 rows, 3 classes; speakers s00-s07 train, s08-s09 val, s10-s11 test. With
    copies, every row also has an augmented copy (corpora.augment), its own speaker group."""
    rng = np.random.default_rng(0)
    labels = LabelSet("toy3", ("angry", "happy", "sad"))
    n_spk, per = 12, 20
    n = n_spk * per
    spk = np.repeat(np.arange(n_spk), per)
    y = rng.integers(0, 3, n)
    split = np.where(spk < 8, "train", np.where(spk < 10, "val", "test"))
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": f"u{i:04d}", "split": split[i], "fold": -1,
                                                 "label": labels.classes[y[i]],
                                                 "speaker": f"s{spk[i]:02d}" if speakers else ""} for i in range(n)]
    centres = rng.normal(size=(3, 6)) * 1.2
    x = centres[y] + rng.normal(size=(n, 6)) + rng.normal(size=(n_spk, 6))[spk]  # a per-speaker offset
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if copies:
        twin = df.assign(id=df["id"] + "@speed1.1", speaker=df["speaker"] + "@speed1.1", **{AUGMENTED: df["id"]})
        df = pd.concat([df.assign(**{AUGMENTED: ""}), twin], ignore_index=True)
        rows = df.to_dict("records")
        x = np.concatenate([x, x + 0.1 * rng.normal(size=x.shape)])
    Manifest("toy", labels, df, {"synthetic": True}).save(root / "manifest.csv")
    write_features(root / "cache", "toy", "f", [r["id"] for r in rows], x, modality="audio")
    return root


def _cfg(root, **train) -> RunConfig:
    return RunConfig(
        name="cv", out=str(root / "runs"),
        data=DataConfig(manifest=str(root / "manifest.csv"), cache=str(root / "cache"), features={"audio": "f"},
                        batch_size=32),
        model=ModelConfig(name="unimodal", params={"hidden": 16}),
        train=TrainConfig(max_epochs=12, patience=3, lr=1e-2, progress=False, logger="none", mse_weight=0.0,
                          cross_validation="speaker", cv_folds=5, **train),
    )


def test_folds_are_speaker_disjoint_and_the_refit_trains_the_chosen_budget(tmp_path):
    root = _corpus(tmp_path)
    m = train_run(_cfg(root))
    sel = m["units"][0]["selection"]
    folds = sel["folds"]
    assert len(folds) == 5
    held = [s for f in folds for s in f["speakers"]]
    assert sorted(held) == [f"s{i:02d}" for i in range(10)]  # training + validation speakers, each held out once
    assert sel["epochs"] == int(round(float(np.median([f["best_epoch"] for f in folds])))) + 1
    assert m["units"][0]["epochs_run"] == sel["epochs"]  # the refit ran exactly the chosen budget
    assert m["cv_epochs"] == [sel["epochs"]] and 0 < m["cv"]["weighted_f1"] <= 1 and m["cv"]["weighted_f1_std"] > 0
    # the validation predictions are out-of-fold: every training and validation row exactly once
    val = pd.read_csv(root / "runs" / "cv" / "predictions_val.csv")
    manifest = Manifest.load(root / "manifest.csv").df
    assert sorted(val["id"]) == sorted(manifest.loc[manifest["split"] != "test", "id"])
    test = pd.read_csv(root / "runs" / "cv" / "predictions.csv")
    assert sorted(test["id"]) == sorted(manifest.loc[manifest["split"] == "test", "id"])
    assert m["test"]["accuracy"] > 0.5  # 3 classes, learnable


def test_augmented_copies_train_only_with_their_originals(tmp_path):
    """Copies are never held out: the folds hold the original speakers, and the out-of-fold and test
    predictions are of original rows only."""
    root = _corpus(tmp_path, copies=True)
    m = train_run(_cfg(root))
    held = [s for f in m["units"][0]["selection"]["folds"] for s in f["speakers"]]
    assert sorted(held) == [f"s{i:02d}" for i in range(10)]
    manifest = Manifest.load(root / "manifest.csv").df
    own = manifest[manifest[AUGMENTED] == ""]
    val = pd.read_csv(root / "runs" / "cv" / "predictions_val.csv")
    test = pd.read_csv(root / "runs" / "cv" / "predictions.csv")
    assert sorted(val["id"]) == sorted(own.loc[own["split"] != "test", "id"])
    assert sorted(test["id"]) == sorted(own.loc[own["split"] == "test", "id"])


def test_speaker_cv_needs_speakers(tmp_path):
    root = _corpus(tmp_path, speakers=False)
    with pytest.raises(ValueError, match="have no speaker"):
        train_run(_cfg(root))


def test_unknown_cross_validation_mode_is_refused():
    with pytest.raises(ValueError):
        TrainConfig(cross_validation="actor")
