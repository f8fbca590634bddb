"""RAVDESS actor folds for speaker-grouped cross-validation (actors_per_fold)."""

from __future__ import annotations

import numpy as np
import pytest

from emofuse.corpora.base import prepare
from emofuse.training.plans import plans as _plans
from tests.conftest import need
from tests.corpora.test_ravdess import make_tree


def test_actor_pairs_are_folds_and_cross_validation_never_mixes_them(tmp_path):
    m = prepare("ravdess", make_tree(tmp_path / "rav", actors=range(1, 13)), tmp_path / "m.csv", actors_per_fold=2)
    df = m.df
    fold_of = df.groupby("speaker").fold.agg(set).to_dict()
    assert all(len(f) == 1 for f in fold_of.values())  # a fold never splits an actor
    assert {s: f.pop() for s, f in fold_of.items()} == {f"Actor_{a:02d}": (a - 1) // 2 for a in range(1, 13)}
    # the fixed split is unchanged by the fold layout
    assert set(df[df.split == "test"].speaker) == {"Actor_11", "Actor_12"}
    # the training loop's cross-validation: fold f test, f+1 validation, never sharing an actor
    plans = _plans(m, cross_validation=True)
    assert len(plans) == 6
    for p in plans:
        parts = {s: set(df.speaker.iloc[p[s]]) for s in ("train", "val", "test")}
        assert len(parts["test"]) == 2 and len(parts["val"]) == 2 and len(parts["train"]) == 8
        assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
        assert not (parts["val"] & parts["test"])
    tested = np.concatenate([p["test"] for p in plans])
    assert sorted(tested.tolist()) == list(range(len(df)))  # every clip is tested exactly once


def test_uneven_actor_count_and_bad_values(tmp_path):
    m = prepare("ravdess", make_tree(tmp_path / "rav", actors=(1, 2, 3, 5, 6)), tmp_path / "m.csv", actors_per_fold=2)
    # consecutive in the order of the actors present, the last fold smaller
    assert m.df.groupby("speaker").fold.first().to_dict() == {
        "Actor_01": 0, "Actor_02": 0, "Actor_03": 1, "Actor_05": 1, "Actor_06": 2}
    with pytest.raises(ValueError, match="actors_per_fold"):
        prepare("ravdess", tmp_path / "rav", tmp_path / "m2.csv", actors_per_fold=0)


@pytest.mark.realdata
def test_real_speech_set_in_actor_pairs(data_root, tmp_path):
    m = prepare("ravdess", need(data_root, "ravdess_speech"), tmp_path / "r.csv", actors_per_fold=2)
    counts = m.df.groupby("fold").size().to_dict()
    assert counts == {f: 120 for f in range(6)}
    sexes = m.df.assign(a=m.df.speaker.str[-2:].astype(int) % 2).groupby("fold").a.nunique()
    assert (sexes == 2).all()  # one man (odd) and one woman (even) in every fold
