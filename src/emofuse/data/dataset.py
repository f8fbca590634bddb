"""Cached features -> dict batches keyed by modality, with masks for absent modalities.

A batch looks like
    {"id": [str], "label": (B,) long, "target": (B, C) float,
     "audio": (B, D) or (B, T, D), "audio_mask": (B,) or (B, T) bool, ...}
and, when the manifest has any text, "transcript": [str] (each row's raw text, "" where none).
When a modality has several candidate encoders (Top-N fusion), each gets its own key
"<modality>:<encoder>" (e.g. "audio:egemaps"); a key's modality is key.split(":")[0].
Features are aligned to manifest rows by sample id, never by row order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from emofuse.corpora.base import Manifest


# Fewer rows than this give a speaker's per-feature std too noisy to divide by (RAVDESS has 60 per
# actor; MELD's one-line extras have one or two): such speakers use the pooled statistics.
MIN_SPEAKER_ROWS = 10


@dataclass
class ModalityFeatures:
    """One modality's features for a list of ids, aligned to that list."""

    encoder: str
    vectors: np.ndarray  # (N, D)
    present: np.ndarray  # (N,) bool
    sequences: list[np.ndarray] | None = None  # N arrays of (T_i, D)
    fingerprint: str = ""
    decoding: dict = field(default_factory=dict)  # the video decoding options the features were made with

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def load_modality(cache_dir: str | Path, corpus: str, encoder: str, ids: list[str], sequence: bool,
                  keys: list[str] | None = None) -> ModalityFeatures:
    """One encoder's features for `ids`; with keys (features.cache.media_key of each row), only
    features computed from exactly those media (a KeyError says which rows' media changed)."""
    from emofuse.features.cache import MissingFeaturesError, load_features

    table = load_features(cache_dir, corpus, encoder)
    try:
        rows = table.indices([str(i) for i in ids], keys)
    except MissingFeaturesError as e:
        raise KeyError(f"{e}; run `emofuse extract` on the manifest first") from None
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
        decoding=dict(table.meta.get("decoding") or {}),
    )


class FeatureDataset(Dataset):
    """In-memory features of one split. `features` maps modality -> ModalityFeatures aligned to `ids`."""

    def __init__(self, ids: list[str], labels: np.ndarray, targets: np.ndarray, features: dict[str, ModalityFeatures],
                 speakers: list[str] | None = None, weights: np.ndarray | None = None, texts: list[str] | None = None):
        self.ids = list(ids)
        self.labels = np.asarray(labels, dtype=np.int64)  # (N,), -1 when unlabelled
        self.targets = np.asarray(targets, dtype=np.float32)  # (N, C)
        self.features = features
        self.speakers = list(speakers) if speakers is not None else [""] * len(self.ids)  # "" when unknown
        # each row's weight in the loss (the manifest's `weight` column: pseudo-labelled rows); None: all 1
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        # each row's transcript (the manifest's text), batched as `transcript` for models that read it
        # in words (llama_topn's prompt); None when the manifest has none
        self.texts = None if texts is None else list(texts)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        item = {"id": self.ids[i], "label": int(self.labels[i]), "target": self.targets[i]}
        if self.weights is not None:
            item["weight"] = float(self.weights[i])
        if self.texts is not None:
            item["transcript"] = self.texts[i]
        for m, f in self.features.items():
            item[m] = f.sequences[i] if f.sequences is not None else f.vectors[i]
            item[f"{m}_present"] = bool(f.present[i])
        return item

    def __getitems__(self, idx: list[int]) -> dict:
        """A whole batch at once (the DataLoader calls this instead of __getitem__ per row, then
        `collate`, which passes a batch through): vectors are gathered by one index per modality
        instead of row by row, the per-step cost that dominates small models' training."""
        idx = np.asarray(idx, dtype=np.int64)
        batch: dict = {
            "id": [self.ids[i] for i in idx],
            "label": torch.from_numpy(self.labels[idx]),
            "target": torch.from_numpy(self.targets[idx]),
        }
        if self.weights is not None:
            batch["weight"] = torch.from_numpy(self.weights[idx])
        if self.texts is not None:
            batch["transcript"] = [self.texts[i] for i in idx]
        for m, f in self.features.items():
            present = f.present[idx]
            if f.sequences is None:
                batch[m] = torch.from_numpy(np.ascontiguousarray(f.vectors[idx], dtype=np.float32))
                batch[f"{m}_mask"] = torch.from_numpy(np.asarray(present, dtype=bool))
            else:
                batch[m], batch[f"{m}_mask"] = _pad([f.sequences[i] for i in idx], present)
        return batch

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        cache_dir: str | Path,
        encoders: dict[str, str | list[str]],
        split: str | list[str] | None = None,
        sequence: bool | dict[str, bool] = False,
        label_smoothing: float = 0.0,
        context: dict[str, int] | None = None,
    ) -> "FeatureDataset":
        """context: input key -> k, adds `<key>_context` (see dialogue_context)."""
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
        from emofuse.features.cache import row_keys

        feats = {}
        for m, enc in encoders.items():
            seq = sequence.get(m, False) if isinstance(sequence, dict) else sequence
            keys = row_keys(df, m)  # each row's media identity: features of other media are refused
            if isinstance(enc, str):
                feats[m] = load_modality(cache_dir, manifest.corpus, enc, ids, seq, keys)
            else:  # several candidate encoders of one modality: keys "<modality>:<encoder>"
                for e in enc:
                    feats[f"{m}:{e}"] = load_modality(cache_dir, manifest.corpus, e, ids, seq, keys)
        for key, k in (context or {}).items():
            if key not in feats:
                raise KeyError(f"context for input {key!r}, which the data does not have; inputs: {sorted(feats)}")
            if k > 0:
                feats[f"{key}_context"] = dialogue_context(feats[key], df, k)
        weights = df["weight"].astype(np.float32).to_numpy() if "weight" in df else None
        texts = df["text"].fillna("").astype(str).tolist() if "text" in df else []
        return cls(ids, labels, targets, feats, df["speaker"].astype(str).tolist(), weights,
                   texts if any(t.strip() for t in texts) else None)

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
        return FeatureDataset([self.ids[i] for i in idx], self.labels[idx], self.targets[idx], feats,
                              [self.speakers[i] for i in idx], None if self.weights is None else self.weights[idx],
                              None if self.texts is None else [self.texts[i] for i in idx])

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
        return FeatureDataset(self.ids, self.labels, self.targets, feats, self.speakers, self.weights, self.texts)

    def per_speaker_standardised(self, keys: list[str] | None = None, min_rows: int = MIN_SPEAKER_ROWS) -> "FeatureDataset":
        """A copy in which each speaker's rows are standardised with that speaker's own per-feature
        mean and std over all of its present rows (all frames for sequences), whatever their split.

        This is speaker normalisation as speech emotion recognition practises it: no labels are
        read, only a speaker's own inputs, so a test speaker is normalised with its own statistics
        exactly as a deployed system would after hearing a few of its utterances. Rows without a
        speaker, and the rows of speakers with fewer than `min_rows` present rows (too few for a
        stable std), use the statistics pooled over all rows instead. Absent rows stay zero.
        keys: the inputs to normalise so (default all); the others are left as they are."""
        groups: dict[str, list[int]] = {}
        for i, spk in enumerate(self.speakers):
            groups.setdefault(spk, []).append(i)
        feats = dict(self.features)
        for k, f in self.features.items():
            if keys is not None and k not in keys:
                continue
            vec = f.vectors.copy()
            seqs = list(f.sequences) if f.sequences is not None else None
            pooled = _stats(f, np.arange(len(self.ids)))
            for spk, rows in groups.items():
                rows = np.asarray(rows)
                own = _stats(f, rows) if spk and int(f.present[rows].sum()) >= min_rows else None
                mean, std = own or pooled
                vec[rows] = np.where(f.present[rows, None], (f.vectors[rows] - mean) / std, 0.0)
                if seqs is not None:
                    for i in rows:
                        if f.present[i]:
                            seqs[i] = ((seqs[i] - mean) / std).astype(np.float32)
            feats[k] = ModalityFeatures(f.encoder, vec.astype(np.float32), f.present, seqs, f.fingerprint)
        return FeatureDataset(self.ids, self.labels, self.targets, feats, self.speakers, self.weights, self.texts)

    def in_dims(self) -> dict[str, int]:
        return {m: f.dim for m, f in self.features.items()}

    def lengths(self) -> None:
        """No length-grouped batches: vectors and frame sequences batch as they come (RawDataset
        groups raw text by its length)."""
        return None

    def collate(self, items: list[dict] | dict) -> dict:
        """The DataLoader's collate_fn for this dataset (RawDataset has its own)."""
        return collate(items)


def unstandardised_keys(mode: str | dict[str, str], keys) -> list[str]:
    """The input keys DataConfig.standardise leaves as extracted ("none"), by key or modality."""
    if isinstance(mode, dict):
        return [k for k in keys if mode.get(k, mode.get(k.split(":")[0], "train")) == "none"]
    return list(keys) if mode == "none" else []


def per_speaker_keys(mode: str | dict[str, str], keys) -> list[str]:
    """The input keys that DataConfig.standardise puts under per-speaker standardisation: all of
    them for "per_speaker", or those whose modality a mapping sets so ("audio" covers "audio:egemaps")."""
    if isinstance(mode, dict):
        return [k for k in keys if mode.get(k.split(":")[0], "train") == "per_speaker"]
    return list(keys) if mode == "per_speaker" else []


def _stats(f: ModalityFeatures, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-feature (mean, std) over the present rows `rows` of f (all their frames for sequences);
    std floored to 1 where a feature is constant. None when no row is present."""
    rows = [i for i in rows if f.present[i]]
    if f.sequences is not None:
        rows = [i for i in rows if len(f.sequences[i])]
        x = np.concatenate([f.sequences[i] for i in rows]) if rows else None
    else:
        x = f.vectors[rows] if rows else None
    if x is None:
        return None
    std = x.std(0)
    return x.mean(0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def dialogue_context(f: ModalityFeatures, df, k: int) -> ModalityFeatures:
    """The k utterances before each row in its dialogue, as a sequence input (k_i, D + 1).

    df: the manifest rows f is aligned to; a dialogue's utterances are its rows in manifest order
    (each adapter writes them in spoken order). Each step holds the earlier utterance's vector,
    newest first, followed by +1 when that utterance's speaker is the current row's speaker and
    -1 otherwise, so the model can tell a reply from a speaker continuing. Earlier rows without
    the input are skipped; a row with no earlier utterance (the first of a dialogue, or no
    dialogue) is absent. Only inputs are read, never labels."""
    dialogues = df["dialogue"].astype(str).tolist()
    speakers = df["speaker"].astype(str).tolist()
    d = f.dim
    history: dict[str, list[int]] = {}
    seqs, present = [], np.zeros(len(dialogues), bool)
    for i, (dia, spk) in enumerate(zip(dialogues, speakers)):
        past = history.setdefault(dia, []) if dia else []
        steps = past[-k:][::-1]  # newest first
        x = np.zeros((len(steps), d + 1), np.float32)  # (k_i, D + 1)
        for j, r in enumerate(steps):
            x[j, :d] = f.vectors[r]
            x[j, d] = 1.0 if spk and speakers[r] == spk else -1.0
        seqs.append(x)
        present[i] = len(steps) > 0
        if dia and f.present[i]:
            past.append(i)
    vectors = np.stack([x.mean(0) if len(x) else np.zeros(d + 1, np.float32) for x in seqs])  # (N, D + 1)
    return ModalityFeatures(f"{f.encoder}+context{k}", vectors, present, seqs, f.fingerprint)


def collate(items: list[dict] | dict) -> dict:
    """Stack a list of items into a dict batch; pad sequences and build masks. A batch already made
    (FeatureDataset.__getitems__) passes through."""
    if isinstance(items, dict):
        return items
    batch: dict = {
        "id": [it["id"] for it in items],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "target": torch.from_numpy(np.stack([it["target"] for it in items])),
    }
    if "weight" in items[0]:
        batch["weight"] = torch.tensor([it["weight"] for it in items], dtype=torch.float32)
    if "transcript" in items[0]:
        batch["transcript"] = [it["transcript"] for it in items]
    modalities = [k[: -len("_present")] for k in items[0] if k.endswith("_present")]
    for m in modalities:
        present = np.array([it[f"{m}_present"] for it in items], dtype=bool)  # (B,)
        xs = [np.asarray(it[m], dtype=np.float32) for it in items]
        if xs[0].ndim == 1:
            batch[m] = torch.from_numpy(np.stack(xs))  # (B, D)
            batch[f"{m}_mask"] = torch.from_numpy(present)
        else:
            batch[m], batch[f"{m}_mask"] = _pad(xs, present)
    return batch


def _pad(xs: list[np.ndarray], present: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(T_i, D) sequences -> (B, T_max, D) zero-padded and its (B, T_max) mask of valid steps
    (none for an absent row)."""
    t_max = max(1, max(x.shape[0] for x in xs))
    d = xs[0].shape[1]
    out = torch.zeros(len(xs), t_max, d)  # (B, T, D)
    mask = torch.zeros(len(xs), t_max, dtype=torch.bool)  # (B, T)
    for i, x in enumerate(xs):
        if present[i] and x.shape[0] > 0:
            out[i, : x.shape[0]] = torch.from_numpy(np.asarray(x, dtype=np.float32))
            mask[i, : x.shape[0]] = True
    return out, mask
