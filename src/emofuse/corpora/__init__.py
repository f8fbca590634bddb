"""Corpora: each adapter reads a corpus in its real on-disk layout and yields manifest rows."""

from emofuse.corpora.base import (
    MANIFEST_COLUMNS,
    CorpusAdapter,
    Manifest,
    PrepareError,
    PrepareResult,
    Reject,
    prepare,
    stratified_folds,
)

__all__ = [
    "MANIFEST_COLUMNS", "CorpusAdapter", "Manifest", "PrepareError", "PrepareResult", "Reject",
    "prepare", "stratified_folds",
]
