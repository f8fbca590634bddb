"""MELD (Friends dialogue, seven emotions) in the layout of its official release:

    ROOT/{train,dev,test}_sent_emo.csv
    ROOT/train_splits/dia<D>_utt<U>.mp4                 clips: optional (text-only without them)
    ROOT/dev_splits_complete/dia<D>_utt<U>.mp4
    ROOT/output_repeated_splits_test/dia<D>_utt<U>.mp4

The official train/dev/test split is kept (dev becomes "val"). Ids are `<subset>_dia<D>_utt<U>`
with subset train/dev/test as in the file names, so they are unique across splits; dialogues are
`<subset>_dia<D>`. A clip folder that is absent means text only (video ""); a folder that is there
but lacks a clip makes that row a missing_file reject."""

from __future__ import annotations

import warnings
from pathlib import Path

from emofuse.corpora.base import CorpusAdapter, PrepareResult, Reject, read_table
from emofuse.corpora.text import fix_mojibake
from emofuse.labels import MELD7
from emofuse.registry import CORPORA

# subset (file-name prefix) -> (manifest split, clip folder, official row count)
SUBSETS = {
    "train": ("train", "train_splits", 9989),
    "dev": ("val", "dev_splits_complete", 1109),
    "test": ("test", "output_repeated_splits_test", 2610),
}
REQUIRED = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


@CORPORA.register("meld")
class MELD(CorpusAdapter):
    name = "meld"
    label_set = MELD7

    def __init__(self, *, clips_root: str | Path | None = None, text_only: bool = False,
                 check_counts: bool = True, **common):
        """clips_root: folder holding the clip folders when they are not beside the CSVs.
        text_only: ignore clips even where they are present (video "").
        check_counts: warn when a CSV does not have the official number of rows (a partial copy)."""
        super().__init__(**common)
        self.clips_root = Path(clips_root) if clips_root else None
        self.text_only = bool(text_only)
        self.check_counts = bool(check_counts)

    def read(self, root: Path) -> PrepareResult:
        root = Path(root)
        clips_root = self.clips_root or root
        found = [s for s in SUBSETS if (root / f"{s}_sent_emo.csv").is_file()]
        if not found:
            raise FileNotFoundError(
                f"no MELD annotation file under {root}; expected {', '.join(f'{s}_sent_emo.csv' for s in SUBSETS)}"
            )
        rows: list[dict] = []
        rejects: list[Reject] = []
        for subset in found:
            split, clip_dir_name, official = SUBSETS[subset]
            path = root / f"{subset}_sent_emo.csv"
            df, bad = read_table(path, required=REQUIRED)
            rejects += [Reject(f"{subset}:{f[0] if f else '?'}", "unreadable_row",
                               f"{path.name}: cannot parse line {','.join(f)[:120]!r}") for f in bad]
            if self.check_counts and len(df) + len(bad) != official:
                warnings.warn(f"{path}: {len(df) + len(bad)} rows, the official release has {official}")
            clip_dir = clips_root / clip_dir_name
            use_clips = not self.text_only and clip_dir.is_dir()
            for i, rec in enumerate(df.to_dict("records")):
                dia, utt = rec["Dialogue_ID"].strip(), rec["Utterance_ID"].strip()
                if not (dia.isdigit() and utt.isdigit()):
                    rejects.append(Reject(
                        f"{subset}_row{i + 2}", "unreadable_row",
                        f"{path.name} line {i + 2}: Dialogue_ID {dia!r} / Utterance_ID {utt!r} are not integers",
                    ))
                    continue
                dia, utt = int(dia), int(utt)
                clip = clip_dir / f"dia{dia}_utt{utt}.mp4"
                rows.append({
                    "id": f"{subset}_dia{dia}_utt{utt}",
                    "split": split,
                    "video": str(clip.absolute()) if use_clips else "",
                    "text": fix_mojibake(rec["Utterance"]).strip(),
                    "label": rec["Emotion"].strip(),
                    "speaker": fix_mojibake(rec["Speaker"]).strip(),
                    "dialogue": f"{subset}_dia{dia}",
                })
        return PrepareResult(rows, rejects)

