"""A generic table (CSV or TSV) for users' own data, one row per sample, the columns named by options.

The root is the table itself, or its folder with `file=` (or a folder holding exactly one .csv/.tsv).
Relative media paths are resolved against the table's folder. Rows without a split (no split
column, or an empty cell) get a seeded fold and the split it implies (fold 0 test, fold 1 val, the
rest train); rows without a label and without a split become "unlabeled".

With a speaker column the folds are stratified group folds by speaker (every speaker's rows in one
fold), so train, val and test speakers are disjoint and `train.cross_validation` over the folds is
speaker-independent: the score then says how the model does on voices and faces it never met.
Without one the folds are drawn by row, and SplitWarning says that scores will be optimistic.

A manifest holds only media: each media path must resolve (symbolic links followed) inside the
table's folder, unless allow_outside_root (`emofuse prepare csv --allow-outside-root`), and each
file is opened at prepare and must hold what its column says (an audio stream for audio; a video
stream, or an image, for video): other rows are rejected by name (`outside_root`, `not_media`).
Text and labels with mojibake ("donâ€™t") are repaired as the meld adapter does. Without label_set,
labels that are no emotion name of any registered label set (a typo such as "hapy") are rejected
with the classes found listed; a table whose labels are all unknown needs label_set.

    emofuse prepare csv --root my_data/labels.csv --out work/mine.csv \
        -o label_set=happy,sad,neutral -o audio_col=wav -o speaker_col=speaker"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from emofuse.corpora.base import (
    CorpusAdapter, PrepareResult, Reject, assign_stratified_splits, flag, read_table, splits_from_folds,
)
from emofuse.corpora.text import fix_mojibake
from emofuse.labels import LABEL_SETS, LabelSet, get_label_set
from emofuse.registry import CORPORA



class SplitWarning(UserWarning):
    """Splits that will make scores look better than they are on new speakers (`emofuse prepare` prints it)."""


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
        allow_outside_root: bool = False,
        check_media: bool = True,
        all_test: bool = False,
        **common,
    ):
        """file: the table, relative to the root folder. *_col: the column holding each manifest
        field (None: not in the table; id_col None or "": ids are "row<line number>"). label_set:
        a label set name (mer6, meld7, ...) or a comma-separated class list; default: the sorted
        distinct labels of the table. sep: the delimiter (default: tab for .tsv/.tab, else comma).
        allow_outside_root: accept media paths outside the table's folder. check_media: open each
        media file at prepare and reject those that hold no audio / video / image. all_test: every
        labelled row without a split is test and no folds are drawn (a folder kept for evaluation,
        e.g. a benchmark's --eval-data, which may hold fewer speakers than folds)."""
        super().__init__(**common)
        self.allow_outside_root = flag(allow_outside_root)
        self.check_media = flag(check_media)
        self.all_test = flag(all_test)
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
        unknown_labels: set[str] = set()
        if self.label_set is None:
            found = sorted({fix_mojibake(x).strip().lower() for x in df[self.cols["label"]] if x.strip()})
            if not found:
                raise ValueError(f"{table}: no labels in column {self.cols['label']!r}; give label_set=")
            known = [x for x in found if x in _emotion_names()]
            if not known:
                raise ValueError(f"{table}: none of the labels in column {self.cols['label']!r} is an emotion name "
                                 f"emofuse knows (found: {', '.join(found[:12])}{', …' if len(found) > 12 else ''}); "
                                 "give the classes with -o label_set=a,b,c")
            unknown_labels = set(found) - set(known)
            self.label_set = LabelSet("custom", tuple(known))

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
            get["text"], get["label"], get["speaker"] = (fix_mojibake(get[k]) for k in ("text", "label", "speaker"))
            if get["label"].lower() in unknown_labels:
                rejects.append(Reject(rid, "unknown_label",
                                      f"label {get['label']!r} is no emotion name emofuse knows; classes found: "
                                      f"{', '.join(self.label_set.classes)}; to keep it as a class of its own, give "
                                      "every class with -o label_set=a,b,c"))
                continue
            media, problem = {}, None
            for field in ("video", "audio"):
                media[field] = _resolve(get[field], folder)
                if media[field] and not problem:
                    problem = self._check_path(field, get[field], media[field], folder)
            if problem:
                rejects.append(Reject(rid, *problem))
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
                "video": media["video"],
                "audio": media["audio"],
                "text": get["text"],
                "label": get["label"],
                "speaker": get["speaker"],
                "dialogue": get["dialogue"],
                "soft_label": soft,
            })
        if self.all_test:
            for r in rows:
                r["split"] = r["split"] or "test"
        given = [r for r in rows if r["split"]]
        assign_stratified_splits(rows, self.label_set, self.n_folds, self.seed)
        # assign_stratified_splits gave a fold (>= 0) to exactly the rows to split that will pass the
        # common checks; with speakers, those rows are dealt again, by speaker
        todo = [r for r in rows if r["fold"] >= 0]
        if todo and self.cols["speaker"]:
            try:
                speaker_folds(todo, self.label_set, self.n_folds, self.seed, self.cols["speaker"])
            except ValueError as e:
                raise ValueError(f"{table}: {e}") from None
        elif todo:
            hint = (f" The table has a column {c!r}: give it with -o speaker_col={c}." if (c := _speaker_like(df.columns))
                    else " Give the column that names each row's speaker with -o speaker_col=COLUMN.")
            warnings.warn(
                f"{table.name}: no speaker column given, so {len(todo)} rows were split into train/val/test by row, "
                "not by speaker: a speaker's clips can be in both train and test, and scores will be higher "
                f"than on speakers the model never met.{hint}", SplitWarning, stacklevel=2)
        if self.cols["speaker"] and given:
            _warn_shared_speakers(given + todo, table.name)
        return PrepareResult(rows, rejects)

    def _check_path(self, field: str, given: str, path: str, folder: Path) -> tuple[str, str] | None:
        """(reason, detail) when a media cell cannot be kept, else None."""
        real = Path(os.path.realpath(path))
        if not self.allow_outside_root and not real.is_relative_to(Path(os.path.realpath(folder))):
            return ("outside_root", f"{field} {given!r} resolves to {real}, outside the table's folder {folder}; "
                                    "move the media under it, or pass --allow-outside-root")
        if self.check_media and Path(path).is_file():  # a missing file is the common check's missing_file
            if why := _not_media(Path(path), field):
                return ("not_media", f"{field} {given!r}: {why}")
        return None

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


def speaker_folds(rows: list[dict], label_set: LabelSet, n_folds: int, seed: int, column: str) -> None:
    """Seeded stratified group folds by speaker (sklearn's StratifiedGroupKFold) for `rows`, in
    place, and the split each fold implies. A row without a speaker is a group of its own."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [r["speaker"] or f"\0{r['id']}" for r in rows]  # "\0": no speaker is ever named so
    speakers = sorted(set(groups))
    if len(speakers) < n_folds:
        raise ValueError(
            f"speaker folds: {len(speakers)} speakers ({column!r}) among the rows to split, fewer than n_folds={n_folds}; "
            "every fold needs its own speakers: pass --n-folds with at most that many (3 at least: one fold "
            "each for test and val), give splits with split_col, or leave out speaker_col")
    unnamed = sum(not r["speaker"] for r in rows)
    if unnamed:
        warnings.warn(f"{unnamed} rows have an empty {column!r}: each is put in a fold alone, so it may share an "
                      "unnamed speaker with rows of other splits", SplitWarning, stacklevel=3)
    labels = np.array([label_set.normalise(r["label"]) for r in rows])  # these rows pass the checks
    folds = np.full(len(rows), -1, dtype=int)
    sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a rare class in fewer speakers than folds: sklearn only warns
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            for i, (_, idx) in enumerate(sgkf.split(np.zeros(len(rows)), labels, np.array(groups))):
                folds[idx] = i
        except ValueError:  # no class has n_folds rows (a handful of rows): deal the speakers out instead
            order = np.random.default_rng(seed).permutation(len(speakers))
            fold_of = {speakers[j]: k % n_folds for k, j in enumerate(order)}
            folds = np.array([fold_of[g] for g in groups])
    # StratifiedGroupKFold places speakers to balance the classes and its shuffle only breaks ties
    # between speakers with the same class spread, so most seeds would give the same folds; the seed
    # also numbers the folds, and with them decides which speakers are test and which val.
    folds = np.random.default_rng(seed).permutation(n_folds)[folds]
    for r, fold, split in zip(rows, folds, splits_from_folds(folds, n_folds)):
        r["fold"], r["split"] = int(fold), split


def _warn_shared_speakers(rows: list[dict], table: str) -> None:
    """Say so when a named speaker has rows in more than one of train, val and test (given splits can do that)."""
    where: dict[str, set[str]] = {}
    for r in rows:
        if r["speaker"] and r["split"] in ("train", "val", "test"):
            where.setdefault(r["speaker"], set()).add(r["split"])
    shared = sorted(s for s, splits in where.items() if len(splits) > 1)
    if shared:
        warnings.warn(f"{table}: {len(shared)} speakers have rows in more than one of train/val/test "
                      f"({', '.join(shared[:5])}{', …' if len(shared) > 5 else ''}), from the split column; "
                      "scores on them are not speaker-independent", SplitWarning, stacklevel=3)


def _speaker_like(columns) -> str | None:
    """A column whose name says it holds speakers, to name in the no-speaker warning."""
    for c in columns:
        if str(c).strip().lower() in ("speaker", "speaker_id", "spk", "actor", "subject", "participant"):
            return str(c)
    return None


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


def _emotion_names() -> set[str]:
    """Every class name and alias of the registered label sets (what "a known emotion name" means)."""
    names: set[str] = set()
    for name in LABEL_SETS:
        ls = get_label_set(name)
        names |= {c.lower() for c in ls.classes} | {a.lower() for a in ls.aliases}
    return names


def _not_media(path: Path, field: str) -> str | None:
    """Why `path` cannot be the `field` ("audio" / "video") of a row, or None when it can."""
    from emofuse.media.errors import MediaError, open_container

    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        with open_container(path) as container:
            kinds = {s.type for s in container.streams}
    except MediaError as e:
        return str(e).removeprefix(f"{path}: ")
    if field == "audio" and "audio" not in kinds:
        return f"no audio stream (streams found: {', '.join(sorted(kinds)) or 'none'})"
    if field == "video" and "video" not in kinds:
        return f"no video stream or image (streams found: {', '.join(sorted(kinds)) or 'none'})"
    return None  # (an image opens as a one-frame video stream)


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
