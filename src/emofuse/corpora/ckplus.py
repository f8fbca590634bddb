"""CK+ (extended Cohn-Kanade) as 48x48 grey face crops of the last, peak frames of its posed sequences:

    ROOT/labels.csv                     path,label,subject,sequence   (path relative to ROOT)
    ROOT/<label>/<subject>_<seq>_<frame>.png   without labels.csv: subject and sequence from the name

Seven classes (anger, contempt, disgust, fear, happy, sadness, surprise; no neutral), 981 images of
327 sequences from 118 subjects in the usual copy. As FER2013's images, a row's `video` cell holds
the image file, decoded by the extractor as a one-frame clip and used whole (`images_are_faces`).

Splits are by subject, never by image: the frames of one sequence are near-duplicates, so an
image-level split would test on copies of training images. Folds are seeded stratified group folds
(sklearn's StratifiedGroupKFold over subjects, stratified by label): fold 0 is test, fold 1 val, the
rest train; the subject is the row's speaker and the sequence its dialogue. `all_test=True` makes
every image test (a corpus for evaluation only).

labels="ckplus6" keeps the six classes FER2013 shares; labels="fer7" maps them onto FER2013's
(anger -> angry, sadness -> sad) so that a model or CNN trained on FER2013 can be scored on CK+.
Contempt has no FER2013 counterpart, so under either its images become "excluded" rejects (listed
in the rejects file, never dropped silently); FER2013's neutral has no CK+ images."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from emofuse.corpora.base import FACE_IMAGES, CorpusAdapter, PrepareResult, Reject, read_table
from emofuse.labels import FER7, LabelSet
from emofuse.media.suffixes import IMAGE_SUFFIXES
from emofuse.registry import CORPORA

CKPLUS7 = LabelSet("ckplus7", ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"),
                   {"angry": "anger", "sad": "sadness", "happiness": "happy", "surprised": "surprise"})
# the six classes CK+ shares with FER2013, in CK+'s names
CKPLUS6 = LabelSet("ckplus6", tuple(c for c in CKPLUS7.classes if c != "contempt"), dict(CKPLUS7.aliases))
LABEL_SETS = {"ckplus7": CKPLUS7, "ckplus6": CKPLUS6, "fer7": FER7}
# CK+ classes without a FER2013 counterpart (excluded under labels="ckplus6" and "fer7")
NOT_IN_FER7 = ("contempt",)
# The usual 48x48 copy: images per class, checked when the copy looks complete (981 rows).
OFFICIAL = {"anger": 135, "contempt": 54, "disgust": 177, "fear": 75, "happy": 207, "sadness": 84, "surprise": 249}
_NAME = re.compile(r"^(S\d+)_(\d+)_\d+$")  # S010_004_00000017 -> subject S010, sequence S010_004


@CORPORA.register("ckplus")
class CKPlus(CorpusAdapter):
    name = "ckplus"
    label_set = CKPLUS7
    decoding = FACE_IMAGES  # face crops: used whole (recorded in the manifest for extract)

    def __init__(self, *, labels: str = "ckplus7", all_test: bool = False, **common):
        """labels: "ckplus7" (its own seven classes), "ckplus6" (without contempt) or "fer7" (FER2013's
        names and order, contempt excluded).
        all_test: every kept image is test (for scoring a model trained elsewhere)."""
        super().__init__(**common)
        if labels not in LABEL_SETS:
            raise ValueError(f"ckplus: labels must be one of {', '.join(LABEL_SETS)}, not {labels!r}")
        self.labels = labels
        self.label_set = LABEL_SETS[labels]
        self.all_test = bool(all_test)

    def read(self, root: Path) -> PrepareResult:
        root = Path(root)
        listed = root / "labels.csv"
        records = self._from_table(listed) if listed.is_file() else self._from_folders(root)
        if not records:
            raise FileNotFoundError(f"no CK+ images under {root}: expected labels.csv (path,label,subject,sequence) "
                                    "or <label>/<subject>_<sequence>_<frame>.png")
        counts: dict[str, int] = {}
        rows: list[dict] = []
        rejects: list[Reject] = []
        for rel, label, subject, sequence in records:
            rid = str(Path(rel).with_suffix("")).replace("\\", "/")
            counts[label] = counts.get(label, 0) + 1
            if self.labels != "ckplus7" and label in NOT_IN_FER7:
                rejects.append(Reject(rid, "excluded", f"{label} has no FER2013 class"))
                continue
            # `dialogue` holds the sequence: its frames belong together as a dialogue's turns do
            rows.append({"id": rid, "split": "test" if self.all_test else "", "fold": -1,
                         "video": str((root / rel).absolute()), "label": label, "speaker": subject,
                         "dialogue": sequence})
        if len(records) == sum(OFFICIAL.values()) and counts != OFFICIAL:
            raise ValueError(f"{root}: {len(records)} images as CK+ has, but per class {counts}, not {OFFICIAL}")
        if not self.all_test:
            self._subject_folds(rows)
        return PrepareResult(rows, rejects)

    def _subject_folds(self, rows: list[dict]) -> None:
        """Seeded stratified group folds over subjects, in place: fold 0 test, 1 val, the rest train."""
        from sklearn.model_selection import StratifiedGroupKFold

        if not rows:
            return
        labels = np.array([r["label"] for r in rows])
        subjects = np.array([r["speaker"] for r in rows])
        n_subjects = len(set(subjects))
        if n_subjects < self.n_folds:
            raise ValueError(f"ckplus: {n_subjects} subjects cannot fill {self.n_folds} subject folds")
        folds = np.full(len(rows), -1)
        sgkf = StratifiedGroupKFold(n_splits=self.n_folds, shuffle=True, random_state=self.seed)
        for i, (_, idx) in enumerate(sgkf.split(np.zeros(len(rows)), labels, subjects)):
            folds[idx] = i
        for r, f in zip(rows, folds):
            r["fold"], r["split"] = int(f), "test" if f == 0 else "val" if f == 1 else "train"

    @staticmethod
    def _from_table(path: Path) -> list[tuple[str, str, str, str]]:
        df, bad = read_table(path, required=("path", "label", "subject"))
        if bad:
            raise ValueError(f"{path}: {len(bad)} unparsable line(s), e.g. {','.join(bad[0])[:120]!r}")
        out = []
        for rec in df.to_dict("records"):
            rel, subject = rec["path"].strip(), rec["subject"].strip()
            sequence = rec.get("sequence", "").strip() or Path(rel).stem.rsplit("_", 1)[0]
            out.append((rel, rec["label"].strip().lower(), subject, sequence))
        return out

    @staticmethod
    def _from_folders(root: Path) -> list[tuple[str, str, str, str]]:
        out = []
        for p in sorted(root.glob("*/*")):
            m = _NAME.match(p.stem)
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and m:
                out.append((p.relative_to(root).as_posix(), p.parent.name.lower(), m.group(1), f"{m.group(1)}_{m.group(2)}"))
        return out
