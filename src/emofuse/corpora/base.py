"""The manifest (one row per utterance) and the checked, re-runnable `prepare` driver.

Every adapter turns a corpus's raw layout into rows and names every row it could not use.
`prepare` adds the checks common to all corpora (duplicate ids, unknown labels, missing media),
and guarantees that rows in = rows kept + rows rejected: nothing is dropped silently."""

from __future__ import annotations

import csv
import inspect
import json
import os
import tempfile
import warnings
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
# Columns a manifest may also have, kept when it is saved: a row's weight in the loss, whether its label
# is a pseudo-label (train.pseudo_label), a label kept out of training, to score what replaced it, and
# the original of an augmented copy (corpora.augment: such rows only ever train).
AUGMENTED = "augmented_from"
OPTIONAL_COLUMNS = ["weight", "pseudo", "hidden_label", AUGMENTED]
# The video decoding of corpora whose video cells are face crops (FER2013's 48x48 faces, CK+): each
# image used whole as a one-frame clip, at the CNN's 64 px. Recorded in the manifest's meta
# ("decoding"), so that every extract on it (the CLI, grids, sweeps) decodes it so without being told.
FACE_IMAGES = {"images_are_faces": True, "face_size": 64, "video_sampling": None}
# "excluded" marks rows a corpus protocol leaves out on purpose (IEMOCAP's frustrated, fear, ... under
# the 4-class protocol): they are counted and written to the rejects file, but are not errors.
REJECT_REASONS = ("missing_file", "unknown_label", "duplicate_id", "unreadable_row", "bad_value", "excluded",
                  "outside_root", "not_media")
EXPECTED_REJECT_REASONS = ("excluded",)


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
    # True for adapters whose root may be a single table file instead of a folder (the generic csv).
    root_may_be_file: ClassVar[bool] = False

    def __init__(self, seed: int = 0, n_folds: int = 5, **options):
        if options:
            raise TypeError(
                f"corpus {self.name!r} has no option(s) {', '.join(sorted(options))}; "
                f"valid options: {', '.join(self.option_names())}"
            )
        if int(n_folds) < 2:
            raise ValueError(f"n_folds must be at least 2, not {n_folds}")
        self.seed = int(seed)
        self.n_folds = int(n_folds)

    @classmethod
    def option_names(cls) -> list[str]:
        """Every keyword the adapter accepts: its own __init__ keywords plus seed and n_folds."""
        own = [
            p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        return sorted(set(own) | {"seed", "n_folds"})

    @abstractmethod
    def read(self, root: Path) -> PrepareResult: ...


def flag(value) -> bool:
    """An adapter option given as a bool or as a string from the command line ("true", "1", "yes", "on")."""
    return str(value).lower() in ("1", "true", "yes", "on")


def stratified_folds(labels: list[str] | np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Seeded stratified fold index per sample (the MER reference shuffles unseeded; we do not)."""
    from sklearn.model_selection import StratifiedKFold

    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, not {n_folds}")
    labels = np.asarray(labels, dtype=str)
    folds = np.full(len(labels), -1, dtype=int)
    if len(labels) == 0:
        return folds
    counts = Counter(labels.tolist())
    if len(labels) < n_folds or max(counts.values()) < n_folds:
        # Too few samples for StratifiedKFold (it refuses when no class fills every fold): deal the
        # samples, grouped by class and shuffled within it, round-robin over the folds.
        rng = np.random.default_rng(seed)
        order = np.lexsort((rng.random(len(labels)), labels))
        folds[order] = np.arange(len(labels)) % n_folds
        return folds
    # Always n_folds folds, even when a rare class has fewer members than folds (sklearn then only
    # warns): fewer folds would silently change the size of the test and val splits built from them.
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for i, (_, idx) in enumerate(skf.split(np.zeros(len(labels)), labels)):
            folds[idx] = i
    return folds


def splits_from_folds(folds: np.ndarray, n_folds: int, test_fold: int = 0, val_fold: int = 1) -> list[str]:
    """Turn fold indices into a fixed train/val/test split (one fold each for val and test)."""
    if n_folds < 3:
        raise ValueError(f"splits from folds need n_folds >= 3 (one fold each for test and val), not {n_folds}")
    out = []
    for f in folds:
        f = int(f) % max(n_folds, 1)
        out.append("test" if f == test_fold else "val" if f == val_fold else "train")
    return out


def read_table(
    path: str | Path, required: tuple[str, ...] = (), sep: str = ",", encoding: str = "utf-8-sig"
) -> tuple[pd.DataFrame, list[list[str]]]:
    """Read a CSV/TSV as text (no NaN, no type guessing; quoted commas, quotes and newlines handled).

    Returns the table and the lines that could not be parsed (more fields than the header), so an
    adapter reports them as unreadable rows instead of failing on them or dropping them. Raises
    ValueError naming the columns found when a required column is absent."""
    path = Path(path)
    bad: list[list[str]] = []
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"  # Excel's "Unicode text" export
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as e:
        if encoding.replace("-sig", "") not in ("utf-8", "utf8"):
            raise ValueError(f"{path}: not readable as {encoding} ({e.reason} at byte {e.start})") from None
        # not UTF-8: a table saved by Excel on Windows is cp1252; bytes cp1252 lacks become U+FFFD
        encoding = "cp1252"
        warnings.warn(f"{path}: not UTF-8 (byte {e.start}); read as Windows-1252. Save the table as UTF-8 "
                      "if its text looks wrong", UserWarning, stacklevel=2)
    kw = dict(sep=sep, dtype=str, keep_default_na=False, encoding=encoding, encoding_errors="replace")
    try:
        try:
            df = pd.read_csv(path, **kw)
        except pd.errors.ParserError:  # only the slower python engine can hand back the bad lines
            df = pd.read_csv(path, engine="python", on_bad_lines=bad.append, **kw)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty table (no header line)") from None
    except (pd.errors.ParserError, csv.Error, UnicodeError) as e:
        raise ValueError(f"{path}: not a readable {'TSV' if sep == chr(9) else 'CSV'} table ({e})") from None
    df = df.fillna("")  # short lines are padded with NaN even with keep_default_na=False
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns found: {list(df.columns)}")
    return df, bad


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
        columns = MANIFEST_COLUMNS + [c for c in OPTIONAL_COLUMNS if c in self.df]
        _atomic_write_text(path, self.df[columns].to_csv(index=False))
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


def _jsonable(v):
    """An option value as JSON can store it (lists and scalars as they are, anything else as text)."""
    if isinstance(v, (str, int, float, bool, type(None))):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _normalise_row(row: dict) -> dict:
    out = {c: row.get(c, "") for c in MANIFEST_COLUMNS}
    for c in MANIFEST_COLUMNS:
        v = out[c]
        out[c] = "" if v is None or (isinstance(v, float) and np.isnan(v)) else v if c == "fold" else str(v)
    try:  # a fold that is not an integer stays as it is and is rejected by _check_row
        out["fold"] = int(out["fold"]) if out["fold"] != "" else -1
    except (TypeError, ValueError):
        pass
    return out


def _check_row(row: dict, label_set: LabelSet, seen: set[str]) -> Reject | None:
    """The problem with one normalised row, or None; normalises its label in place.

    Every id is remembered, even one rejected for another reason, so that an id given twice is
    reported as a duplicate instead of the second copy slipping in behind a rejected first one."""
    rid = row["id"]
    if not rid:
        return Reject("", "unreadable_row", f"row without id: {row}")
    if rid in seen:
        return Reject(rid, "duplicate_id", "id already used by an earlier row")
    seen.add(rid)
    if row["split"] not in SPLITS:
        return Reject(rid, "bad_value", f"split {row['split']!r} not in {SPLITS}")
    if not isinstance(row["fold"], int):
        return Reject(rid, "bad_value", f"fold {row['fold']!r} is not an integer")
    if row["label"]:
        try:
            row["label"] = label_set.normalise(row["label"])
        except KeyError:
            return Reject(rid, "unknown_label", f"label {row['label']!r} not in {label_set.name}")
    elif row["split"] != "unlabeled":
        return Reject(rid, "unknown_label", f"empty label in split {row['split']!r}")
    missing = [p for p in (row["video"], row["audio"]) if p and not Path(p).is_file()]
    if missing:
        return Reject(rid, "missing_file", ", ".join(missing))
    return None


def check_rows(result: PrepareResult, label_set: LabelSet) -> PrepareResult:
    """The checks every corpus gets: duplicate ids, unknown labels, bad splits, missing media files."""
    kept: list[dict] = []
    rejects = list(result.rejects)
    seen: set[str] = set()
    for raw in result.rows:
        row = _normalise_row(raw)
        problem = _check_row(row, label_set, seen)
        if problem is None:
            kept.append(row)
        else:
            rejects.append(problem)
    return PrepareResult(kept, rejects)


def assign_stratified_splits(
    rows: list[dict], label_set: LabelSet, n_folds: int, seed: int, test_fold: int = 0, val_fold: int = 1
) -> None:
    """Give every row whose "split" is empty a seeded stratified fold and the split it implies
    (fold `test_fold` test, `val_fold` val, the rest train), in place.

    Folds are drawn only over the rows that will pass the common checks, so a rejected row (bad
    label, duplicate, missing file) never shifts the folds of the kept ones: `--on-error skip`
    gives the same folds as a clean corpus. Rows that will be rejected get fold -1 and split train."""
    seen: set[str] = set()
    todo: list[int] = []
    todo_labels: list[str] = []
    for i, raw in enumerate(rows):
        pending = not raw.get("split")
        row = _normalise_row({**raw, "split": "train"} if pending else raw)
        ok = _check_row(row, label_set, seen) is None
        if pending:
            raw["split"], raw["fold"] = "train", -1
            if ok:
                todo.append(i)
                todo_labels.append(row["label"])
    folds = stratified_folds(todo_labels, n_folds, seed)
    for i, fold, split in zip(todo, folds, splits_from_folds(folds, n_folds, test_fold, val_fold)):
        rows[i]["fold"], rows[i]["split"] = int(fold), split


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
    rejected rows go to `<out stem>.rejects.csv` and preparation goes on. Rows the corpus protocol
    excludes (reason "excluded") are never an error: they always go to the rejects file."""
    from emofuse.registry import CORPORA

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    root = Path(root)
    adapter_cls = CORPORA.get(corpus)
    if not (root.is_dir() or (adapter_cls.root_may_be_file and root.is_file())):
        kind = "a folder or a table file" if adapter_cls.root_may_be_file else "a folder"
        raise FileNotFoundError(f"corpus root is not {kind}: {root}")
    adapter: CorpusAdapter = adapter_cls(seed=seed, n_folds=n_folds, **options)
    raw = adapter.read(root)
    n_in = raw.n_in
    checked = check_rows(raw, adapter.label_set)
    if len(checked.rows) + len(checked.rejects) != n_in:  # the accounting promise
        raise AssertionError(f"row accounting broken: {n_in} in, {len(checked.rows)} kept, {len(checked.rejects)} rejected")
    unknown = sorted({r.reason for r in checked.rejects} - set(REJECT_REASONS))
    if unknown:
        raise AssertionError(f"adapter {corpus!r} used reject reasons {unknown}; valid: {REJECT_REASONS}")
    problems = [r for r in checked.rejects if r.reason not in EXPECTED_REJECT_REASONS]
    n_excluded = len(checked.rejects) - len(problems)
    out = Path(out)
    rejects_file = Manifest.rejects_path(out)
    if problems and on_error == "raise":
        excluded = f" ({n_excluded} more excluded by the corpus protocol)" if n_excluded else ""
        raise PrepareError(
            f"{corpus}: {len(problems)} of {n_in} rows rejected{excluded}: {summarise_rejects(problems)}"
            " (use --on-error skip to write them to a rejects file and go on)"
        )
    if checked.rejects:
        out.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(rejects_file, pd.DataFrame([asdict(r) for r in checked.rejects]).to_csv(index=False))
    elif rejects_file.exists():
        rejects_file.unlink()
    df = pd.DataFrame(checked.rows, columns=MANIFEST_COLUMNS)
    counts = {s: int((df["split"] == s).sum()) for s in SPLITS if (df["split"] == s).any()}
    meta = {
        "root": str(root.resolve()),
        "seed": seed,
        "n_folds": n_folds,
        "options": {k: _jsonable(v) for k, v in sorted(options.items())},
        "rows_in": n_in,
        "rows_kept": len(df),
        "rows_rejected": len(checked.rejects),  # excluded rows included: rows_in = kept + rejected
        "rows_excluded": n_excluded,
        "rejects_by_reason": dict(sorted(Counter(r.reason for r in checked.rejects).items())),
        "split_counts": counts,
        "synthetic": bool(getattr(adapter, "synthetic", False))
        or ((root if root.is_dir() else root.parent) / "SYNTHETIC").exists(),
    }
    if decoding := getattr(adapter, "decoding", None):  # how extract decodes its media (features.extract)
        meta["decoding"] = dict(decoding)
    manifest = Manifest(corpus, adapter.label_set, df, meta)
    manifest.save(out)
    return manifest
