"""The manifest (one row per utterance) and the checked, re-runnable `prepare` driver.

Every adapter turns a corpus's raw layout into rows and names every row it could not use.
`prepare` adds the checks common to all corpora (duplicate ids, unknown labels, missing media),
and guarantees that rows in = rows kept + rows rejected: nothing is dropped silently."""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from emofuse.labels import LabelSet

MANIFEST_COLUMNS = [
    "id",  # unique utterance id within the corpus
    "split",  # train / val / test / unlabeled
    "fold",  # seeded stratified (or speaker/session) fold index for cross-validation, -1 if none
    "video",  # absolute path or ""
    "audio",  # absolute path or "" (a video's own audio track is used when empty and video is set)
    "text",  # transcript or ""
    "label",  # canonical class name of the label set, "" when unlabelled
    "speaker",
    "dialogue",
    "soft_label",  # JSON list of per-class probabilities (annotator votes) or ""
]
SPLITS = ("train", "val", "test", "unlabeled")
REJECT_REASONS = ("missing_file", "unknown_label", "duplicate_id", "unreadable_row", "bad_value")


class PrepareError(RuntimeError):
    """Raised when input problems are found and `on_error` is 'raise'."""


@dataclass
class Reject:
    id: str
    reason: str  # one of REJECT_REASONS
    detail: str = ""


@dataclass
class PrepareResult:
    rows: list[dict]
    rejects: list[Reject] = field(default_factory=list)

    @property
    def n_in(self) -> int:
        return len(self.rows) + len(self.rejects)


class CorpusAdapter(ABC):
    """Reads one corpus layout. Subclasses set `name` and `label_set` and implement `read`.

    `read` returns every raw row either as a manifest row (dict with MANIFEST_COLUMNS keys; missing
    keys default to "") or as a Reject; the common checks run afterwards in `prepare`."""

    name: ClassVar[str]
    label_set: ClassVar[LabelSet]

    def __init__(self, seed: int = 0, n_folds: int = 5, **options):
        if options:
            raise TypeError(
                f"corpus {self.name!r} takes no options {sorted(options)}; "
                f"options of every corpus: seed, n_folds"
            )
        self.seed = seed
        self.n_folds = n_folds

    @abstractmethod
    def read(self, root: Path) -> PrepareResult: ...


def stratified_folds(labels: list[str] | np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Seeded stratified fold index per sample (the MER reference shuffles unseeded; we do not)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    folds = np.full(len(labels), -1, dtype=int)
    if len(labels) == 0:
        return folds
    counts = Counter(labels.tolist())
    k = max(2, min(n_folds, min(counts.values())))
    if len(counts) < 2 or min(counts.values()) < 2:
        rng = np.random.default_rng(seed)
        return rng.permutation(len(labels)) % n_folds
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, idx) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        folds[idx] = i
    return folds


def splits_from_folds(folds: np.ndarray, n_folds: int, test_fold: int = 0, val_fold: int = 1) -> list[str]:
    """Turn fold indices into a fixed train/val/test split (one fold each for val and test)."""
    out = []
    for f in folds:
        f = int(f) % max(n_folds, 1)
        out.append("test" if f == test_fold else "val" if f == val_fold else "train")
    return out


@dataclass
class Manifest:
    corpus: str
    label_set: LabelSet
    df: pd.DataFrame
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.df)

    @property
    def ids(self) -> list[str]:
        return self.df["id"].tolist()

    def split(self, name: str) -> pd.DataFrame:
        return self.df[self.df["split"] == name]

    def label_indices(self) -> np.ndarray:
        """Class index per row, -1 where unlabelled."""
        return np.array(
            [self.label_set.index(x) if x else -1 for x in self.df["label"].tolist()], dtype=int
        )

    def soft_labels(self) -> np.ndarray:
        """(N, C) target distributions: annotator votes where present, else one-hot (zeros if unlabelled)."""
        c = len(self.label_set)
        out = np.zeros((len(self.df), c), dtype=np.float32)
        for i, (lab, soft) in enumerate(zip(self.df["label"], self.df["soft_label"])):
            if soft:
                v = np.asarray(json.loads(soft), dtype=np.float32)
                out[i] = v / max(v.sum(), 1e-8)
            elif lab:
                out[i, self.label_set.index(lab)] = 1.0
        return out

    @staticmethod
    def meta_path(path: str | Path) -> Path:
        path = Path(path)
        return path.with_name(path.stem + ".meta.json")

    @staticmethod
    def rejects_path(path: str | Path) -> Path:
        path = Path(path)
        return path.with_name(path.stem + ".rejects.csv")

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, corpus=self.corpus, label_set=self.label_set.to_dict(), n_rows=len(self.df))
        _atomic_write_text(path, self.df[MANIFEST_COLUMNS].to_csv(index=False))
        _atomic_write_text(self.meta_path(path), json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"manifest not found: {path}")
        mp = cls.meta_path(path)
        if not mp.is_file():
            raise FileNotFoundError(f"manifest metadata not found beside the manifest: {mp}")
        meta = json.loads(mp.read_text())
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: not a manifest, missing columns {missing}")
        df["fold"] = df["fold"].astype(int)
        return cls(meta["corpus"], LabelSet.from_dict(meta["label_set"]), df, meta)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _normalise_row(row: dict) -> dict:
    out = {c: row.get(c, "") for c in MANIFEST_COLUMNS}
    out["fold"] = int(out["fold"]) if out["fold"] not in ("", None) else -1
    for c in MANIFEST_COLUMNS:
        if c != "fold":
            v = out[c]
            out[c] = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
    return out


def check_rows(result: PrepareResult, label_set: LabelSet) -> PrepareResult:
    """The checks every corpus gets: duplicate ids, unknown labels, bad splits, missing media files."""
    kept: list[dict] = []
    rejects = list(result.rejects)
    seen: set[str] = set()
    for raw in result.rows:
        row = _normalise_row(raw)
        rid = row["id"]
        if not rid:
            rejects.append(Reject("", "unreadable_row", f"row without id: {raw}"))
            continue
        if rid in seen:
            rejects.append(Reject(rid, "duplicate_id", "id already used by an earlier row"))
            continue
        if row["split"] not in SPLITS:
            rejects.append(Reject(rid, "bad_value", f"split {row['split']!r} not in {SPLITS}"))
            continue
        if row["label"]:
            try:
                row["label"] = label_set.normalise(row["label"])
            except KeyError:
                rejects.append(Reject(rid, "unknown_label", f"label {row['label']!r} not in {label_set.name}"))
                continue
        elif row["split"] != "unlabeled":
            rejects.append(Reject(rid, "unknown_label", f"empty label in split {row['split']!r}"))
            continue
        missing = [p for p in (row["video"], row["audio"]) if p and not Path(p).is_file()]
        if missing:
            rejects.append(Reject(rid, "missing_file", ", ".join(missing)))
            continue
        seen.add(rid)
        kept.append(row)
    return PrepareResult(kept, rejects)


def summarise_rejects(rejects: list[Reject], limit: int = 5) -> str:
    by_reason: dict[str, list[Reject]] = {}
    for r in rejects:
        by_reason.setdefault(r.reason, []).append(r)
    parts = []
    for reason, rs in sorted(by_reason.items()):
        names = ", ".join(f"{r.id or '?'} ({r.detail})" if r.detail else (r.id or "?") for r in rs[:limit])
        more = f", … {len(rs) - limit} more" if len(rs) > limit else ""
        parts.append(f"{len(rs)} {reason}: {names}{more}")
    return "; ".join(parts)


def prepare(
    corpus: str,
    root: str | Path,
    out: str | Path,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    seed: int = 0,
    n_folds: int = 5,
    **options,
) -> Manifest:
    """Read `corpus` from `root`, check it, and write the manifest to `out`.

    With on_error='raise' any problem raises PrepareError naming the rows; with 'skip' the
    rejected rows go to `<out stem>.rejects.csv` and preparation goes on."""
    from emofuse.registry import CORPORA

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"corpus root is not a folder: {root}")
    adapter_cls = CORPORA.get(corpus)
    adapter: CorpusAdapter = adapter_cls(seed=seed, n_folds=n_folds, **options)
    raw = adapter.read(root)
    n_in = raw.n_in
    checked = check_rows(raw, adapter.label_set)
    if len(checked.rows) + len(checked.rejects) != n_in:  # the accounting promise
        raise AssertionError(f"row accounting broken: {n_in} in, {len(checked.rows)} kept, {len(checked.rejects)} rejected")
    out = Path(out)
    rejects_file = Manifest.rejects_path(out)
    if checked.rejects:
        msg = f"{corpus}: {len(checked.rejects)} of {n_in} rows rejected: {summarise_rejects(checked.rejects)}"
        if on_error == "raise":
            raise PrepareError(msg + " (use --on-error skip to write them to a rejects file and go on)")
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([asdict(r) for r in checked.rejects]).to_csv(rejects_file, index=False)
    elif rejects_file.exists():
        rejects_file.unlink()
    df = pd.DataFrame(checked.rows, columns=MANIFEST_COLUMNS)
    counts = {s: int((df["split"] == s).sum()) for s in SPLITS if (df["split"] == s).any()}
    meta = {
        "root": str(root.resolve()),
        "seed": seed,
        "n_folds": n_folds,
        "rows_in": n_in,
        "rows_kept": len(df),
        "rows_rejected": len(checked.rejects),
        "rejects_by_reason": dict(Counter(r.reason for r in checked.rejects)),
        "split_counts": counts,
        "synthetic": bool(getattr(adapter, "synthetic", False)) or (root / "SYNTHETIC").exists(),
    }
    manifest = Manifest(corpus, adapter.label_set, df, meta)
    manifest.save(out)
    return manifest
