"""FER2013 (48x48 grey faces, seven expressions) as image files, in either of its common layouts:

    ROOT/labels.csv                     path,split,label,fer2013_usage   (path relative to ROOT)
    ROOT/<folder>/<label>/<name>.jpg    without labels.csv: the folder layout of the Kaggle image
                                        copies, <folder> train or test (PublicTest + PrivateTest)

The images are faces already, so a row's `video` cell holds the image file: the extractor decodes
it as a one-frame clip through the same face path as video (`extract(..., images_are_faces=True)`
uses it whole instead of searching it for a face).

Splits follow FER2013's own usage where it is given: Training -> train, PublicTest -> val,
PrivateTest -> test (a `test/` folder without usage becomes test). When only training images are
present (as in a copy of the training split alone), they are cut into seeded stratified folds:
fold 0 test, fold 1 val, the rest train. `holdout=True` forces those folds even when other usages
are present, and `usage="Training"` keeps the rows of one usage only (the others are "excluded").

Ids are the file path without its extension (`train/angry/Training_8475486`): the file names
alone are not unique (two different images are called Training_8475486.jpg, one angry and one
surprise)."""

from __future__ import annotations

import warnings
from pathlib import Path

from emofuse.corpora.base import FACE_IMAGES, CorpusAdapter, PrepareResult, Reject, assign_stratified_splits, read_table
from emofuse.labels import FER7
from emofuse.media.suffixes import IMAGE_SUFFIXES
from emofuse.registry import CORPORA

USAGE_SPLITS = {"training": "train", "publictest": "val", "privatetest": "test"}
# The official numbers of images per usage, checked when a copy claims to be complete.
OFFICIAL = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
FOLDER_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "publictest": "val",
                 "test": "test", "privatetest": "test"}


@CORPORA.register("fer2013")
class FER2013(CorpusAdapter):
    name = "fer2013"
    label_set = FER7
    decoding = FACE_IMAGES  # face crops: used whole (recorded in the manifest for extract)

    def __init__(self, *, holdout: bool = False, usage: str | None = None, check_counts: bool = True, **common):
        """holdout: split every kept image into seeded stratified folds (fold 0 test, 1 val) instead
        of by FER2013 usage. usage: keep only the images of one usage (Training, PublicTest or
        PrivateTest, or a folder name in the folder layout). check_counts: warn when a usage does
        not have its official number of images."""
        super().__init__(**common)
        self.holdout = bool(holdout)
        self.usage = usage.strip().lower() if usage else None
        self.check_counts = bool(check_counts)

    def read(self, root: Path) -> PrepareResult:
        root = Path(root)
        listed = root / "labels.csv"
        records = self._from_table(listed) if listed.is_file() else self._from_folders(root)
        if not records:
            raise FileNotFoundError(
                f"no FER2013 images under {root}: expected labels.csv (path,label[,split,fer2013_usage]) "
                "or <train|test>/<label>/*.jpg"
            )
        rows: list[dict] = []
        rejects: list[Reject] = []
        counts: dict[str, int] = {}
        for rel, label, usage in records:
            rid = str(Path(rel).with_suffix("")).replace("\\", "/")
            counts[usage] = counts.get(usage, 0) + 1
            if self.usage and usage.lower() != self.usage:
                rejects.append(Reject(rid, "excluded", f"usage {usage} (usage={self.usage})"))
                continue
            split = "" if self.holdout else USAGE_SPLITS.get(usage.lower(), FOLDER_SPLITS.get(usage.lower(), ""))
            rows.append({"id": rid, "split": split, "fold": -1, "video": str((root / rel).absolute()),
                         "label": label, "speaker": "", "dialogue": ""})
        if self.check_counts:
            for usage, n in counts.items():
                want = OFFICIAL.get(next((k for k in OFFICIAL if k.lower() == usage.lower()), ""))
                if want and n != want:
                    warnings.warn(f"{root}: {n} {usage} images, FER2013 has {want}")
        # Only training images (or holdout): no official val/test, so cut seeded stratified folds.
        if not any(r["split"] in ("val", "test") for r in rows):
            for r in rows:
                r["split"] = ""
        assign_stratified_splits(rows, self.label_set, self.n_folds, self.seed)
        return PrepareResult(rows, rejects)

    @staticmethod
    def _from_table(path: Path) -> list[tuple[str, str, str]]:
        df, bad = read_table(path, required=("path", "label"))
        if bad:
            raise ValueError(f"{path}: {len(bad)} unparsable line(s), e.g. {','.join(bad[0])[:120]!r}")
        out = []
        for rec in df.to_dict("records"):
            usage = rec.get("fer2013_usage", "").strip() or rec.get("split", "").strip() or "Training"
            out.append((rec["path"].strip(), rec["label"].strip(), usage))
        return out

    @staticmethod
    def _from_folders(root: Path) -> list[tuple[str, str, str]]:
        out = []
        for p in sorted(root.glob("*/*/*")):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."):
                rel = p.relative_to(root)
                out.append((rel.as_posix(), rel.parts[1], rel.parts[0]))
        return out
