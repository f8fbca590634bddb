"""Corpora: each adapter reads a corpus in its real on-disk layout and yields manifest rows."""

from emofuse.corpora.base import (
    MANIFEST_COLUMNS,
    REJECT_REASONS,
    CorpusAdapter,
    Manifest,
    PrepareError,
    PrepareResult,
    Reject,
    assign_stratified_splits,
    prepare,
    splits_from_folds,
    stratified_folds,
)

__all__ = [
    "MANIFEST_COLUMNS", "REJECT_REASONS", "CorpusAdapter", "Manifest", "PrepareError", "PrepareResult", "Reject",
    "assign_stratified_splits", "prepare", "splits_from_folds", "stratified_folds",
]
