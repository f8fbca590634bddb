"""Cached features -> dict batches keyed by modality, with masks for absent modalities.

A batch looks like
    {"id": [str], "label": (B,) long, "target": (B, C) float,
     "audio": (B, D) or (B, T, D), "audio_mask": (B,) or (B, T) bool, ...}
When a modality has several candidate encoders (Top-N fusion), each gets its own key
"<modality>:<encoder>" (e.g. "audio:egemaps"); a key's modality is key.split(":")[0].
Features are aligned to manifest rows by sample id, never by row order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from emofuse.corpora.base import Manifest


@dataclass
class ModalityFeatures:
    """One modality's features for a list of ids, aligned to that list."""

    encoder: str
    vectors: np.ndarray  # (N, D)
    present: np.ndarray  # (N,) bool
    sequences: list[np.ndarray] | None = None  # N arrays of (T_i, D)
    fingerprint: str = ""

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def load_modality(cache_dir: str | Path, corpus: str, encoder: str, ids: list[str], sequence: bool) -> ModalityFeatures:
    from emofuse.features.cache import load_features

    table = load_features(cache_dir, corpus, encoder)
    index = {sid: i for i, sid in enumerate(table.ids)}
    missing = [sid for sid in ids if sid not in index]
    if missing:
        raise KeyError(
            f"{len(missing)} ids of the manifest have no {encoder!r} features in {cache_dir} "
            f"(first: {missing[:5]}); run `emofuse extract` first"
        )
    rows = np.array([index[sid] for sid in ids], dtype=int)
    present = np.asarray(table.present)[rows] if getattr(table, "present", None) is not None else np.ones(len(ids), bool)
    seqs = None
    if sequence:
        if table.sequences is None:
            raise ValueError(f"encoder {encoder!r} cached no sequences; use utterance vectors or re-extract")
        seqs = [np.asarray(table.sequences[i], dtype=np.float32) for i in rows]
    return ModalityFeatures(
        encoder=encoder,
        vectors=np.asarray(table.vectors, dtype=np.float32)[rows],
        present=present.astype(bool),
        sequences=seqs,
        fingerprint=str(table.meta.get("fingerprint", "")),
    )


class FeatureDataset(Dataset):
    """In-memory features of one split. `features` maps modality -> ModalityFeatures aligned to `ids`."""

    def __init__(self, ids: list[str], labels: np.ndarray, targets: np.ndarray, features: dict[str, ModalityFeatures]):
        self.ids = list(ids)
        self.labels = np.asarray(labels, dtype=np.int64)  # (N,), -1 when unlabelled
        self.targets = np.asarray(targets, dtype=np.float32)  # (N, C)
        self.features = features

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        item = {"id": self.ids[i], "label": int(self.labels[i]), "target": self.targets[i]}
        for m, f in self.features.items():
            item[m] = f.sequences[i] if f.sequences is not None else f.vectors[i]
            item[f"{m}_present"] = bool(f.present[i])
        return item

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        cache_dir: str | Path,
        encoders: dict[str, str | list[str]],
        split: str | list[str] | None = None,
        sequence: bool | dict[str, bool] = False,
        label_smoothing: float = 0.0,
    ) -> "FeatureDataset":
        if split is None:
            df = manifest.df
        else:
            df = manifest.df[manifest.df["split"].isin([split] if isinstance(split, str) else split)]
        ids = df["id"].tolist()
        all_labels = manifest.label_indices()
        all_targets = manifest.soft_labels()
        rows = df.index.to_numpy()
        pos = manifest.df.index.get_indexer(rows)
        labels, targets = all_labels[pos], all_targets[pos]
        if label_smoothing > 0:
            c = targets.shape[1]
            targets = targets * (1 - label_smoothing) + label_smoothing / c
        feats = {}
        for m, enc in encoders.items():
            seq = sequence.get(m, False) if isinstance(sequence, dict) else sequence
            if isinstance(enc, str):
                feats[m] = load_modality(cache_dir, manifest.corpus, enc, ids, seq)
            else:  # several candidate encoders of one modality: keys "<modality>:<encoder>"
                for e in enc:
                    feats[f"{m}:{e}"] = load_modality(cache_dir, manifest.corpus, e, ids, seq)
        return cls(ids, labels, targets, feats)

    def subset(self, idx) -> "FeatureDataset":
        """The rows at positions `idx` (a fold or split), sharing nothing mutable with self."""
        idx = np.asarray(idx, dtype=int)
        feats = {
            m: ModalityFeatures(
                f.encoder, f.vectors[idx], f.present[idx],
                [f.sequences[i] for i in idx] if f.sequences is not None else None, f.fingerprint,
            )
            for m, f in self.features.items()
        }
        return FeatureDataset([self.ids[i] for i in idx], self.labels[idx], self.targets[idx], feats)

    def fit_standardiser(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per-feature mean and std of each input over its present rows (all valid frames for
        sequences). Fitted on the training split only; eGeMAPS mixes Hz, dB and ratios, so
        unscaled inputs let a few large features drown the rest."""
        stats = {}
        for k, f in self.features.items():
            if f.sequences is not None:
                rows = [x for x, p in zip(f.sequences, f.present) if p and len(x)]
                x = np.concatenate(rows) if rows else np.zeros((1, f.dim), np.float32)
            else:
                x = f.vectors[f.present] if f.present.any() else np.zeros((1, f.dim), np.float32)
            mean = x.mean(0).astype(np.float32)
            std = x.std(0).astype(np.float32)
            stats[k] = (mean, np.where(std > 1e-6, std, 1.0).astype(np.float32))
        return stats

    def standardised(self, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> "FeatureDataset":
        """A copy with (x - mean) / std applied; absent rows stay zero."""
        feats = {}
        for k, f in self.features.items():
            mean, std = stats[k]
            vec = np.where(f.present[:, None], (f.vectors - mean) / std, 0.0).astype(np.float32)
            seqs = None
            if f.sequences is not None:
                seqs = [((x - mean) / std).astype(np.float32) if p else x for x, p in zip(f.sequences, f.present)]
            feats[k] = ModalityFeatures(f.encoder, vec, f.present, seqs, f.fingerprint)
        return FeatureDataset(self.ids, self.labels, self.targets, feats)

    def in_dims(self) -> dict[str, int]:
        return {m: f.dim for m, f in self.features.items()}


def collate(items: list[dict]) -> dict:
    """Stack a list of items into a dict batch; pad sequences and build masks."""
    batch: dict = {
        "id": [it["id"] for it in items],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "target": torch.from_numpy(np.stack([it["target"] for it in items])),
    }
    modalities = [k[: -len("_present")] for k in items[0] if k.endswith("_present")]
    for m in modalities:
        present = torch.tensor([it[f"{m}_present"] for it in items], dtype=torch.bool)  # (B,)
        xs = [np.asarray(it[m], dtype=np.float32) for it in items]
        if xs[0].ndim == 1:
            batch[m] = torch.from_numpy(np.stack(xs))  # (B, D)
            batch[f"{m}_mask"] = present
        else:
            t_max = max(1, max(x.shape[0] for x in xs))
            d = xs[0].shape[1]
            out = torch.zeros(len(xs), t_max, d)  # (B, T, D)
            mask = torch.zeros(len(xs), t_max, dtype=torch.bool)  # (B, T)
            for i, x in enumerate(xs):
                if present[i] and x.shape[0] > 0:
                    out[i, : x.shape[0]] = torch.from_numpy(x)
                    mask[i, : x.shape[0]] = True
            batch[m], batch[f"{m}_mask"] = out, mask
    return batch
