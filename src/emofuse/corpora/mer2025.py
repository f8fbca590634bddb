"""MER2025 Track 1 (discrete emotions, six classes) in the layout it is distributed in:

    ROOT/video/<name>.mp4
    ROOT/audio/<name>.wav            optional; the video's own audio track is used when absent
    ROOT/subtitle_chieng.csv         name, chinese, english
    ROOT/track1_train_disdim.csv     name, discrete[, valence]
    ROOT/track_all_candidates.csv    optional; name: every candidate test sample
    ROOT/SYNTHETIC                   optional marker written by the demo generator

Labelled rows get a seeded stratified fold; fold 0 is test, fold 1 val, the rest train (the
reference code shuffles without a seed, so its splits cannot be reproduced). Candidates without a
label become split "unlabeled"."""

from __future__ import annotations

import warnings
from pathlib import Path

from emofuse.corpora.base import CorpusAdapter, PrepareResult, Reject, assign_stratified_splits, read_table
from emofuse.labels import MER6
from emofuse.registry import CORPORA

LABEL_FILE = "track1_train_disdim.csv"
SUBTITLE_FILE = "subtitle_chieng.csv"
CANDIDATE_FILE = "track_all_candidates.csv"


@CORPORA.register("mer2025")
class MER2025(CorpusAdapter):
    name = "mer2025"
    label_set = MER6

    def __init__(self, *, test_fold: int = 0, val_fold: int = 1, include_unlabeled: bool = True, **common):
        """test_fold / val_fold: which seeded folds become the test and val splits.
        include_unlabeled: include the unlabelled candidates (split "unlabeled") when the candidate list is there."""
        super().__init__(**common)
        if not (0 <= test_fold < self.n_folds and 0 <= val_fold < self.n_folds) or test_fold == val_fold:
            raise ValueError(
                f"test_fold and val_fold must be two different folds in 0..{self.n_folds - 1}, "
                f"not {test_fold} and {val_fold}"
            )
        self.test_fold = test_fold
        self.val_fold = val_fold
        self.include_unlabeled = include_unlabeled

    def read(self, root: Path) -> PrepareResult:
        root = Path(root)
        label_path = root / LABEL_FILE
        if not label_path.is_file():
            raise FileNotFoundError(
                f"{label_path} not found; MER2025 Track 1 expects video/, audio/, {SUBTITLE_FILE}, "
                f"{LABEL_FILE} and optionally {CANDIDATE_FILE} under the root"
            )
        self.synthetic = (root / "SYNTHETIC").exists()
        texts = self._texts(root / SUBTITLE_FILE)
        labels, bad = read_table(label_path, required=("name", "discrete"))
        rows: list[dict] = []
        rejects = [_unreadable(fields, LABEL_FILE) for fields in bad]
        labelled: set[str] = set()
        for i, rec in enumerate(labels.to_dict("records")):
            name = rec["name"].strip()
            if not name:
                rejects.append(Reject(f"{LABEL_FILE}:row{i + 2}", "unreadable_row", "empty name"))
                continue
            labelled.add(name)
            rows.append(self._row(root, name, rec["discrete"].strip(), texts, split=""))
        # Draw folds before the unlabelled rows join: they must not take part in the stratification.
        assign_stratified_splits(rows, self.label_set, self.n_folds, self.seed, self.test_fold, self.val_fold)

        cand_path = root / CANDIDATE_FILE
        if self.include_unlabeled and cand_path.is_file():
            cands, bad = read_table(cand_path, required=("name",))
            rejects += [_unreadable(fields, CANDIDATE_FILE) for fields in bad]
            for i, rec in enumerate(cands.to_dict("records")):
                name = rec["name"].strip()
                if not name:
                    rejects.append(Reject(f"{CANDIDATE_FILE}:row{i + 2}", "unreadable_row", "empty name"))
                elif name not in labelled:  # a labelled candidate is already a row
                    rows.append(self._row(root, name, "", texts, split="unlabeled"))
        return PrepareResult(rows, rejects)

    @staticmethod
    def _texts(path: Path) -> dict[str, str]:
        """name -> English subtitle, the Chinese one where the English is empty."""
        if not path.is_file():
            return {}
        df, bad = read_table(path, required=("name",))
        if bad:  # not manifest rows, but their samples lose their text: say so
            warnings.warn(f"{path}: {len(bad)} unparsable line(s) skipped, e.g. {','.join(bad[0])[:120]!r}")
        eng = df["english"] if "english" in df.columns else [""] * len(df)
        chi = df["chinese"] if "chinese" in df.columns else [""] * len(df)
        return {n.strip(): (e.strip() or c.strip()) for n, e, c in zip(df["name"], eng, chi)}

    @staticmethod
    def _row(root: Path, name: str, label: str, texts: dict[str, str], split: str) -> dict:
        audio = root / "audio" / f"{name}.wav"
        return {
            "id": name,
            "split": split,
            "fold": -1,
            "video": str((root / "video" / f"{name}.mp4").absolute()),
            "audio": str(audio.absolute()) if audio.is_file() else "",
            "text": texts.get(name, ""),
            "label": label,
        }


def _unreadable(fields: list[str], file: str) -> Reject:
    rid = fields[0].strip() if fields and fields[0].strip() else f"{file}:?"
    return Reject(rid, "unreadable_row", f"{file}: cannot parse line {','.join(fields)[:120]!r}")
