"""Features a test writes into the cache itself, as extract would have stored them."""

from __future__ import annotations

import numpy as np

from emofuse.features.cache import CacheEntry
from emofuse.features.encoders.base import Encoder


class Fixed(Encoder):
    """Stands for an encoder whose features the test writes into the cache itself."""

    def __init__(self, name: str, dim: int, modality: str = "text"):
        self.name, self.dim, self.modality = name, dim, modality

    def config(self):
        return {"kind": "fixed", "name": self.name, "dim": self.dim}

    def encode(self, items):
        raise NotImplementedError


def write_features(cache, corpus: str, name: str, ids: list[str], x: np.ndarray, modality: str = "text") -> None:
    """One complete cache entry for `name`: row i of x is the features of ids[i], all present."""
    entry = CacheEntry.open(cache, corpus, Fixed(name, x.shape[1], modality))
    entry.write_shard(list(ids), x.astype(np.float32), np.ones(len(ids), bool))
    entry.save_meta(complete=True, n=len(ids), n_present=len(ids), n_expected=len(ids))


def toy_manifest(path, y: np.ndarray, split: np.ndarray, classes=("happy", "sad", "angry"), hide_unlabeled: bool = False):
    """A toy3 manifest at `path`, row i of class y[i] in split[i] (ids u0000, ...); with hide_unlabeled,
    rows of split "unlabeled" get no label and keep it in hidden_label. Returns the manifest's frame."""
    import pandas as pd

    from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
    from emofuse.labels import LabelSet

    labels = LabelSet("toy3", tuple(classes))
    hidden = hide_unlabeled & (np.asarray(split) == "unlabeled")
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": f"u{i:04d}", "split": split[i], "fold": -1,
                                                 "label": "" if hidden[i] else labels.classes[y[i]]} for i in range(len(y))]
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if hide_unlabeled:
        df["hidden_label"] = [labels.classes[y[i]] if hidden[i] else "" for i in range(len(y))]
    Manifest("toy", labels, df, {"synthetic": True}).save(path)
    return df
