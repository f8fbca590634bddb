"""GoEmotions (Reddit comments; Demszky et al., ACL 2020) in the layout of its release's data folder:

    ROOT/{train,dev,test}.tsv   text<TAB>label ids<TAB>comment id   (no header, no quoting)
    ROOT/labels.txt             one label name per line; a label id is a line number (0-based)

ROOT is one variant: `original/` (27 emotions + neutral) or `ekman/` (Ekman's six + neutral); a
root holding both takes `variant=`. The official split is kept (dev becomes "val"); ids are the
comment ids. A comment carries one or more label ids:

  multi_label=False (default): the single-label task keeps the comments with exactly one label;
    the others are "excluded" rejects (counted, not errors);
  multi_label=True: every comment is kept; `soft_label` holds its multi-hot vector (JSON list over
    labels.txt) for a multi-label model (train.multi_label), and `label` its first listed label,
    since every labelled manifest row names one class.

The label set is read from labels.txt (its name: `goemotions-<variant>`), so both variants and
future re-labellings need no code."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pandas as pd

from emofuse.corpora.base import CorpusAdapter, PrepareResult, Reject
from emofuse.labels import LabelSet
from emofuse.registry import CORPORA

SUBSETS = {"train": ("train", 43410), "dev": ("val", 5426), "test": ("test", 5427)}
VARIANTS = ("ekman", "original")


@CORPORA.register("goemotions")
class GoEmotions(CorpusAdapter):
    name = "goemotions"
    label_set = None  # type: ignore[assignment]  # per instance, from labels.txt

    def __init__(self, *, variant: str | None = None, multi_label: bool = False, check_counts: bool = True, **common):
        """variant: ekman or original, when the root holds both variant folders (else the root is
        the variant folder itself). multi_label: keep every comment with its multi-hot labels
        instead of only the single-label ones. check_counts: warn when a TSV does not have the
        official number of rows."""
        super().__init__(**common)
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        self.variant = variant
        self.multi_label = bool(multi_label)
        self.check_counts = bool(check_counts)
        self.label_set: LabelSet | None = None

    def read(self, root: Path) -> PrepareResult:
        folder = self._folder(Path(root))
        names = [x.strip() for x in (folder / "labels.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
        variant = self.variant or ("ekman" if len(names) <= 7 else "original")
        self.label_set = LabelSet(f"goemotions-{variant}", tuple(names), {"happy": "joy", "angry": "anger",
                                                                          "sad": "sadness", "surprised": "surprise"})
        rows: list[dict] = []
        rejects: list[Reject] = []
        for subset, (split, official) in SUBSETS.items():
            path = folder / f"{subset}.tsv"
            if not path.is_file():
                raise FileNotFoundError(f"GoEmotions file not found: {path}")
            # QUOTE_NONE: comments hold unbalanced quotes; the TSV never quotes a field.
            df = pd.read_csv(path, sep="\t", header=None, names=["text", "labels", "id"], dtype=str,
                             keep_default_na=False, quoting=csv.QUOTE_NONE, encoding="utf-8")
            if self.check_counts and len(df) != official:
                warnings.warn(f"{path}: {len(df)} rows, the release has {official}")
            for line, rec in enumerate(df.to_dict("records"), start=1):
                rid = rec["id"].strip() or f"{subset}_line{line}"
                try:
                    ids = [int(x) for x in rec["labels"].split(",") if x.strip()]
                except ValueError:
                    ids = []
                if not ids or any(not 0 <= i < len(names) for i in ids):
                    rejects.append(Reject(rid, "unknown_label", f"{path.name} line {line}: label ids {rec['labels']!r}"))
                    continue
                ids = list(dict.fromkeys(ids))
                if len(ids) > 1 and not self.multi_label:
                    rejects.append(Reject(rid, "excluded", f"{len(ids)} labels (single-label task)"))
                    continue
                row = {"id": rid, "split": split, "text": rec["text"].strip(), "label": names[ids[0]]}
                if self.multi_label:
                    row["soft_label"] = json.dumps([int(i in ids) for i in range(len(names))])
                rows.append(row)
        return PrepareResult(rows, rejects)

    def _folder(self, root: Path) -> Path:
        if (root / "labels.txt").is_file() and (root / "train.tsv").is_file():
            return root
        found = [v for v in VARIANTS if (root / v / "labels.txt").is_file()]
        if self.variant:
            if self.variant not in found:
                raise FileNotFoundError(f"no {self.variant}/labels.txt under {root} (variants found: {found or 'none'})")
            return root / self.variant
        if len(found) == 1:
            return root / found[0]
        raise FileNotFoundError(
            f"{root}: give variant= (found {found})" if found else
            f"no GoEmotions labels.txt + train.tsv under {root} (nor in {', '.join(VARIANTS)}/)"
        )
