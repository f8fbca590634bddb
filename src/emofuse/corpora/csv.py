"""A generic table (CSV or TSV) for users' own data, one row per sample, the columns named by options.

The root is the table itself, or its folder with `file=` (or a folder holding exactly one .csv/.tsv).
Relative media paths are resolved against the table's folder. Rows without a split (no split
column, or an empty cell) get a seeded stratified fold and the split it implies (fold 0 test,
fold 1 val, the rest train); rows without a label and without a split become "unlabeled".

    emofuse prepare csv my_data/labels.csv --set label_set=happy,sad,neutral --set audio_col=wav"""

from __future__ import annotations

import json
import os
from pathlib import Path

from emofuse.corpora.base import CorpusAdapter, PrepareResult, Reject, assign_stratified_splits, read_table
from emofuse.labels import LABEL_SETS, LabelSet, get_label_set
from emofuse.registry import CORPORA

# spellings of split names found in the wild -> manifest split
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val", "development": "val",
    "test": "test", "testing": "test",
    "unlabeled": "unlabeled", "unlabelled": "unlabeled",
}


@CORPORA.register("csv")
class CSVCorpus(CorpusAdapter):
    name = "csv"
    label_set = None  # type: ignore[assignment]  # per instance: from label_set= or from the table
    root_may_be_file = True

    def __init__(
        self,
        *,
        file: str | None = None,
        id_col: str | None = "id",
        label_col: str = "label",
        text_col: str | None = None,
        video_col: str | None = None,
        audio_col: str | None = None,
        split_col: str | None = None,
        speaker_col: str | None = None,
        dialogue_col: str | None = None,
        soft_label_col: str | None = None,
        label_set: str | None = None,
        sep: str | None = None,
        **common,
    ):
        """file: the table, relative to the root folder. *_col: the column holding each manifest
        field (None: not in the table; id_col None or "": ids are "row<line number>"). label_set:
        a label set name (mer6, meld7, ...) or a comma-separated class list; default: the sorted
        distinct labels of the table. sep: the delimiter (default: tab for .tsv/.tab, else comma)."""
        super().__init__(**common)
        self.file = file
        self.cols = {
            "id": id_col or None, "label": label_col, "text": text_col, "video": video_col, "audio": audio_col,
            "split": split_col, "speaker": speaker_col, "dialogue": dialogue_col, "soft_label": soft_label_col,
        }
        self.sep = sep
        # An instance attribute here (a class attribute elsewhere): each table brings its own classes.
        self.label_set: LabelSet | None = _label_set(label_set) if label_set else None

    def read(self, root: Path) -> PrepareResult:
        table = self._table(Path(root))
        sep = self.sep or ("\t" if table.suffix.lower() in (".tsv", ".tab") else ",")
        required = tuple(c for c in self.cols.values() if c)
        df, bad = read_table(table, required=required, sep=sep)
        rejects = [Reject(f"{table.name}:?", "unreadable_row", f"cannot parse line {sep.join(f)[:120]!r}") for f in bad]
        if self.label_set is None:
            found = sorted({x.strip().lower() for x in df[self.cols["label"]] if x.strip()})
            if not found:
                raise ValueError(f"{table}: no labels in column {self.cols['label']!r}; give label_set=")
            self.label_set = LabelSet("custom", tuple(found))

        folder = table.parent
        rows: list[dict] = []
        for i, rec in enumerate(df.to_dict("records")):
            line = i + 2  # 1-based, after the header
            get = {f: (rec[c].strip() if c else "") for f, c in self.cols.items()}
            rid = get["id"] if self.cols["id"] else f"row{line}"
            if not rid:
                rejects.append(Reject(f"row{line}", "unreadable_row",
                                      f"{table.name} line {line}: empty {self.cols['id']!r}"))
                continue
            soft = get["soft_label"]
            if soft and (problem := _check_soft(soft, len(self.label_set))):
                rejects.append(Reject(rid, "bad_value", f"{self.cols['soft_label']}: {problem}"))
                continue
            split = SPLIT_ALIASES.get(get["split"].lower(), get["split"])
            rows.append({
                "id": rid,
                "split": split or ("" if get["label"] else "unlabeled"),
                "fold": -1,
                "video": _resolve(get["video"], folder),
                "audio": _resolve(get["audio"], folder),
                "text": get["text"],
                "label": get["label"],
                "speaker": get["speaker"],
                "dialogue": get["dialogue"],
                "soft_label": soft,
            })
        assign_stratified_splits(rows, self.label_set, self.n_folds, self.seed)
        return PrepareResult(rows, rejects)

    def _table(self, root: Path) -> Path:
        if root.is_file():
            if self.file:
                raise ValueError(f"root {root} is already a table; file={self.file!r} is for a root folder")
            return root
        if self.file:
            path = root / self.file
            if not path.is_file():
                raise FileNotFoundError(f"table not found: {path}")
            return path
        tables = sorted(p for p in root.iterdir() if p.suffix.lower() in (".csv", ".tsv") and p.is_file())
        if len(tables) != 1:
            found = ", ".join(p.name for p in tables) or "none"
            raise FileNotFoundError(f"{root}: give the table with file= or as the root (tables found: {found})")
        return tables[0]


def _label_set(spec: str) -> LabelSet:
    """A registered label set by name, or a custom one from "a,b,c"."""
    if "," not in spec:
        if spec not in LABEL_SETS:
            raise KeyError(
                f"unknown label set {spec!r}; valid: {', '.join(sorted(LABEL_SETS))}, "
                "or a comma-separated list of classes"
            )
        return get_label_set(spec)
    classes = tuple(dict.fromkeys(c.strip().lower() for c in spec.split(",") if c.strip()))
    if len(classes) < 2:
        raise ValueError(f"label_set {spec!r}: a custom label set needs at least two classes")
    return LabelSet("custom", classes)


def _resolve(path: str, folder: Path) -> str:
    if not path:
        return ""
    p = Path(path).expanduser()
    return os.path.normpath(p if p.is_absolute() else (folder / p).absolute())


def _check_soft(text: str, n_classes: int) -> str | None:
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return f"not a JSON list: {text[:60]!r}"
    if not (isinstance(v, list) and len(v) == n_classes and all(isinstance(x, (int, float)) for x in v)):
        return f"expected a list of {n_classes} numbers, got {text[:60]!r}"
    if any(x < 0 for x in v) or sum(v) <= 0:
        return f"probabilities must be >= 0 and not all zero: {text[:60]!r}"
    return None
