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
