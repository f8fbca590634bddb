"""The shared pieces of corpus preparation: seeded stratified folds, split assignment, the checks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from emofuse.corpora.base import (
    PrepareResult, Reject, assign_stratified_splits, check_rows, splits_from_folds, stratified_folds,
)
from emofuse.labels import MER6


@pytest.mark.parametrize("labels", [
    ["a"] * 50 + ["b"] * 7 + ["c"] * 2,  # a class rarer than the number of folds
    ["a", "a", "b", "b", "c", "c", "d", "d"],  # no class fills every fold
    ["a"] * 3,  # fewer samples than folds
])
def test_folds_always_use_n_folds_balanced_and_seeded(labels):
    f = stratified_folds(labels, 5, seed=0)
    sizes = np.bincount(f[f >= 0], minlength=5)
    assert (f >= 0).all() and len(sizes) == 5
    assert sizes.max() - sizes.min() <= 1  # never fewer, lopsided folds: test/val sizes stay 1/n_folds
    assert f.tolist() == stratified_folds(labels, 5, seed=0).tolist()
    for cls in Counter(labels):  # every class spread as evenly as it can be
        per_fold = np.bincount(f[np.asarray(labels) == cls], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1


def test_folds_depend_on_seed():
    labels = [c for c in "abcdef" for _ in range(20)]
    assert stratified_folds(labels, 5, 0).tolist() != stratified_folds(labels, 5, 1).tolist()
    assert stratified_folds([], 5, 0).tolist() == []


def test_splits_from_folds_needs_three_folds():
    assert splits_from_folds(np.array([0, 1, 2, 3]), 4) == ["test", "val", "train", "train"]
    with pytest.raises(ValueError, match="n_folds >= 3"):
        splits_from_folds(np.array([0, 1]), 2)


def test_assign_splits_ignores_rows_that_will_be_rejected(tmp_path):
    good = [{"id": f"g{i}", "label": ["happy", "sad"][i % 2]} for i in range(20)]
    bad = [{"id": "g3", "label": "sad"}, {"id": "x", "label": "bored"},
           {"id": "y", "label": "sad", "video": str(tmp_path / "gone.mp4")}]
    clean = [dict(r) for r in good]
    mixed = [dict(r) for r in good[:5]] + bad + [dict(r) for r in good[5:]]
    assign_stratified_splits(clean, MER6, 5, seed=0)
    assign_stratified_splits(mixed, MER6, 5, seed=0)
    kept = check_rows(PrepareResult(mixed), MER6)
    assert [(r["id"], r["fold"], r["split"]) for r in kept.rows] == [(r["id"], r["fold"], r["split"]) for r in clean]
    assert sorted(r.reason for r in kept.rejects) == ["duplicate_id", "missing_file", "unknown_label"]


def test_check_rows_reports_every_problem():
    rows = [
        {"id": "a", "split": "train", "label": "happy"},
        {"id": "", "split": "train", "label": "happy"},
        {"id": "b", "split": "training", "label": "happy"},
        {"id": "c", "split": "train", "label": "happy", "fold": "x"},
        {"id": "d", "split": "train", "label": ""},
        {"id": "e", "split": "unlabeled", "label": ""},
        {"id": "e", "split": "unlabeled", "label": ""},
    ]
    out = check_rows(PrepareResult(rows, [Reject("z", "excluded")]), MER6)
    assert [r["id"] for r in out.rows] == ["a", "e"]
    assert [r.reason for r in out.rejects] == [
        "excluded", "unreadable_row", "bad_value", "bad_value", "unknown_label", "duplicate_id"]
