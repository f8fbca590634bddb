"""Speed-perturbed training copies: the audio, the rows, and that copies only ever train."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofuse.bench.ravdess import fold_manifest
from emofuse.corpora.augment import is_augmented, originals, parse_rates, speed_perturbed
from emofuse.corpora.base import AUGMENTED, MANIFEST_COLUMNS, Manifest
from emofuse.labels import LabelSet
from emofuse.media.audio import load_audio, write_wav
from emofuse.media.augment import speed_perturb
from emofuse.training.plans import plans

SR = 16000


def test_speed_perturb_changes_length_and_pitch():
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    fast = speed_perturb(tone, 1.1, SR)
    slow = speed_perturb(tone, 0.9, SR)
    assert fast.dtype == np.float32 and abs(len(fast) - SR / 1.1) <= 2 and abs(len(slow) - SR / 0.9) <= 2
    # the pitch moves with the tempo: 440 Hz played 1.1 times as fast peaks near 484 Hz
    peak = np.fft.rfftfreq(len(fast), 1 / SR)[np.abs(np.fft.rfft(fast)).argmax()]
    assert abs(peak - 484) < 3, peak
    assert np.array_equal(speed_perturb(tone, 1.0, SR), tone)
    with pytest.raises(ValueError, match="rate"):
        speed_perturb(tone, 3.0, SR)
    with pytest.raises(ValueError, match="mono"):
        speed_perturb(np.zeros((2, 100), np.float32), 1.1, SR)


def _manifest(tmp_path, n_per_fold=2, folds=4) -> Manifest:
    rng = np.random.default_rng(0)
    rows = []
    for f in range(folds):
        for i in range(n_per_fold):
            path = write_wav(tmp_path / "wav" / f"c{f}{i}.wav", 0.1 * rng.standard_normal(SR // 2).astype(np.float32), SR)
            rows.append({c: "" for c in MANIFEST_COLUMNS} | {
                "id": f"c{f}{i}", "split": ("train", "val", "test", "train")[f], "fold": f, "audio": str(path),
                "label": ("happy", "sad")[i % 2], "speaker": f"s{f}"})
    return Manifest("toy", LabelSet("toy2", ("happy", "sad")), pd.DataFrame(rows, columns=MANIFEST_COLUMNS), {})


def test_copies_are_rows_of_their_own_written_once(tmp_path):
    m = _manifest(tmp_path)
    aug = speed_perturbed(m, [0.9, 1.1], tmp_path / "aug")
    df = aug.df
    copies = df[is_augmented(df)]
    assert len(df) == 3 * len(m.df) and len(copies) == 2 * len(m.df)
    row = copies[copies["id"] == "c01@speed0.9"].iloc[0]
    assert row[AUGMENTED] == "c01" and row["speaker"] == "s0@speed0.9" and row["label"] == "sad" and row["fold"] == 0
    assert abs(len(load_audio(row["audio"], SR)) - SR / 2 / 0.9) <= 2
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "aug").rglob("*.wav")}
    assert len(stamp) == 16
    speed_perturbed(m, [0.9, 1.1], tmp_path / "aug")  # reused, not written again
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "aug").rglob("*.wav")} == stamp
    # saved and loaded, the column survives; originals() gives back the corpus's own rows
    aug.save(tmp_path / "m.csv")
    back = Manifest.load(tmp_path / "m.csv")
    assert is_augmented(back.df).sum() == 16 and originals(back).df["id"].tolist() == m.df["id"].tolist()
    only_train = speed_perturbed(m, [1.1], tmp_path / "aug", splits=("train",))
    assert set(only_train.df.loc[is_augmented(only_train.df), AUGMENTED]) == {"c00", "c01", "c30", "c31"}
    with pytest.raises(ValueError, match="already has augmented rows"):
        speed_perturbed(aug, [0.9], tmp_path / "aug")


def test_copies_only_ever_train(tmp_path):
    aug = speed_perturbed(_manifest(tmp_path), [0.9, 1.1], tmp_path / "aug")
    copy = is_augmented(aug.df).to_numpy()
    ids = aug.df["id"].to_numpy()
    (plain,) = plans(aug, cross_validation=False)
    assert copy[plain["train"]].sum() == 8 and not copy[plain["val"]].any() and not copy[plain["test"]].any()
    for p in plans(aug, cross_validation=True):
        assert not copy[p["val"]].any() and not copy[p["test"]].any()
        # a copy trains exactly when its original does
        train_ids = set(ids[p["train"]])
        for i in np.flatnonzero(copy):
            assert (ids[i] in train_ids) == (aug.df[AUGMENTED].iloc[i] in train_ids)
    for f in range(4):
        fm = fold_manifest(aug, f)
        c = is_augmented(fm.df)
        assert (fm.df.loc[c, "split"] == "train").all() and c.sum() == 8  # 2 training folds x 2 clips x 2 rates
        assert set(fm.df.loc[~c, "split"]) == {"train", "val", "test"}


def test_rates_option():
    assert parse_rates("0.9,1.1") == [0.9, 1.1] and parse_rates("none") == [] and parse_rates(None) == []
    assert parse_rates([0.9, "1.1"]) == [0.9, 1.1]
    for bad in ("1.0", "0.2", "fast"):
        with pytest.raises(ValueError, match="speed_perturb"):
            parse_rates(bad)
