"""The layout nEMO and URDU share (not a corpus itself): a `labels.csv` of `path,label,speaker`
(more columns allowed), one row per clip, the audio file at `path` relative to the root.

Rows are audio only; ids are the file names without their extension. Labels are mapped into the
shared speech space (labels.SPEECH7) by each corpus's own `label_map`; a label neither maps nor
names a class is rejected as unknown, never guessed. A corpus lacking a class has no rows of it.

Splits are speaker-independent: seeded stratified group folds by speaker (corpora.csv's
speaker_folds: every speaker's clips in one fold, classes balanced across folds as far as whole
speakers allow), fold 0 test, fold 1 val, the rest train; or the speakers given as test_speakers /
val_speakers. Preparation checks its own counts against the release (`release`: rows, speakers and
clips per class) unless check_counts is false (a subset or a synthetic copy)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import ClassVar

from emofuse.corpora.base import CorpusAdapter, PrepareResult, Reject, flag, read_table
from emofuse.labels import SPEECH7


class SpeakerTableCorpus(CorpusAdapter):
    label_set = SPEECH7
    table: ClassVar[str] = "labels.csv"
    # the release's counts: {"rows": int, "speakers": int, "classes": {class: clips}}
    release: ClassVar[dict]
    label_map: ClassVar[dict[str, str]] = {}  # the corpus's raw label -> SPEECH7 class, over SPEECH7's own names

    def __init__(self, *, test_speakers: str | list[str] | None = None, val_speakers: str | list[str] | None = None,
                 all_test: bool = False, check_counts: bool = True, **common):
        """test_speakers / val_speakers: speakers held out ("A,B" or a list), instead of the seeded
        speaker folds. all_test: every clip is test (e.g. a benchmark's left-out corpus).
        check_counts: fail unless the table holds the release's rows, speakers and clips per class."""
        super().__init__(**common)
        self.test_speakers = _names(test_speakers)
        self.val_speakers = _names(val_speakers)
        if set(self.test_speakers) & set(self.val_speakers):
            raise ValueError(f"test_speakers {self.test_speakers} and val_speakers {self.val_speakers} overlap")
        self.all_test = flag(all_test)
        self.check_counts = flag(check_counts)

    def read(self, root: Path) -> PrepareResult:
        path = Path(root) / self.table
        if not path.is_file():
            raise FileNotFoundError(f"{self.name}: no {self.table} under {root} (expected columns path,label,speaker)")
        df, bad = read_table(path, required=("path", "label", "speaker"))
        rejects = [Reject(f"{self.table}:?", "unreadable_row", f"cannot parse line {','.join(f)[:120]!r}") for f in bad]
        rows: list[dict] = []
        for rec in df.to_dict("records"):
            rel = rec["path"].strip()
            raw = rec["label"].strip()
            label = self.label_map.get(raw.lower(), raw)  # an unknown label stays as it is: the common check rejects it
            rows.append({
                "id": Path(rel).stem or rel,
                "split": "train",
                "fold": -1,
                "audio": str((Path(root) / rel).absolute()) if rel else "",
                "text": self.text_of(rec),
                "label": label,
                "speaker": rec["speaker"].strip(),
            })
        if self.check_counts:
            self._check_counts(rows, bad, path)
        self._split(rows)
        return PrepareResult(rows, rejects)

    def text_of(self, rec: dict) -> str:
        """The manifest's text of a row; none by default (the corpora here speak fixed sentences)."""
        return ""

    def _check_counts(self, rows: list[dict], bad: list, path: Path) -> None:
        want = self.release
        got = {
            "rows": len(rows) + len(bad),
            "speakers": len({r["speaker"] for r in rows}),
            "classes": dict(Counter(SPEECH7.normalise(r["label"]) if SPEECH7.is_known(r["label"]) else r["label"]
                                    for r in rows)),
        }
        diff = [f"{k}: {got[k]} (the release has {want[k]})" for k in ("rows", "speakers", "classes") if got[k] != want[k]]
        if diff:
            raise ValueError(f"{self.name}: {path} is not the release: " + "; ".join(diff)
                             + ". For a subset or a copy, pass check_counts=false")

    def _split(self, rows: list[dict]) -> None:
        """Splits and folds by speaker, in place, over the rows the common checks will keep."""
        from emofuse.corpora.csv import speaker_folds

        ok = [r for r in rows if SPEECH7.is_known(r["label"])]  # (a row without a speaker is a fold of its own)
        speakers = sorted({r["speaker"] for r in ok if r["speaker"]})
        if self.all_test:
            for r in rows:
                r["split"] = "test"
            return
        absent = sorted(set(self.test_speakers + self.val_speakers) - set(speakers))
        if absent:
            raise ValueError(f"{self.name}: speakers {absent} are not in the corpus; speakers present: {speakers}")
        if self.test_speakers or self.val_speakers:
            for r in ok:
                r["split"] = ("test" if r["speaker"] in self.test_speakers else
                              "val" if r["speaker"] in self.val_speakers else "train")
                r["fold"] = {"test": 0, "val": 1, "train": 2}[r["split"]]
        else:
            speaker_folds(ok, SPEECH7, self.n_folds, self.seed, "speaker")
        missing = {"train", "val", "test"} - {r["split"] for r in ok}
        if ok and missing:
            raise ValueError(f"{self.name}: no {', '.join(sorted(missing))} speakers; speakers present: {speakers}")


def _names(value) -> list[str]:
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return sorted({str(x).strip() for x in items if str(x).strip()})
