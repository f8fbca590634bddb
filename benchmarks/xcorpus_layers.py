"""Do Whisper-base layers 1-3 together carry speech emotion across corpora better than layer 2 alone? A check
with logistic regression on cached features, outside any bench, before bench speech-xcorpus gets such rows.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/xcorpus_layers.py \
        --manifest runs/emofuse-base5/work/speech/manifest.csv --cache runs/base-cache

The manifest and the cache are `emofuse build-model`'s speech step's (RAVDESS, nEMO, URDU in the 7-class space,
corpus `speech-xcorpus`), with layers 1 and 3 added by
`emofuse extract --manifest M -e whisper-base@layer=1 -e whisper-base@layer=3 --cache runs/base-cache`.
Tasks are bench speech-xcorpus's loco-X: the other two corpora's train and test speakers train, their val
speakers validate (C is chosen there, from CS), every clip of X tests. Features are z-scored per speaker or per
corpus (label-free), as the bench standardises them. Inputs:
- one feature set (a layer, eGeMAPS, or several concatenated);
- `avg(...)`: one logistic regression per feature set, their probabilities averaged (the bench's ensemble,
  without its calibration).
Both the validation and the test figure are printed; only validation chooses C.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from whisper_layers import per_speaker as zscore  # noqa: E402  (z-scores per group: speaker or corpus)

CS = (0.003, 0.01, 0.03, 0.1)
SETS = {"l1": "whisper-base-l1", "l2": "whisper-base", "l3": "whisper-base-l3", "eg": "egemaps"}
INPUTS = ("l2", "l2+eg", "l1+l2+l3", "l1+l2+l3+eg", "avg(l1,l2,l3)", "avg(l1,l2,l3,eg)", "avg(l2,eg)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=Path("runs/emofuse-base5/work/speech/manifest.csv"))
    ap.add_argument("--cache", type=Path, default=Path("runs/base-cache"))
    ap.add_argument("--norm", nargs="+", default=["corpus", "speaker"])
    a = ap.parse_args()
    from emofuse.features.cache import load_features

    m = pd.read_csv(a.manifest)
    corpus = m["id"].str.split(":").str[0].to_numpy()
    split = m["split"].to_numpy()
    raw = {}
    for key, enc in SETS.items():
        t = load_features(a.cache, "speech-xcorpus", enc)
        index = {k: i for i, k in enumerate(t.ids)}
        raw[key] = t.vectors[[index[k] for k in m["id"]]].astype(np.float64)
    classes = sorted(m["label"].unique())
    y = m["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()

    def wf1(pred, rows):
        return 100 * f1_score(y[rows], pred, average="weighted")

    print("| left out | z-scores | inputs | C (chosen on val) | val wF1 | test wF1 |\n|---|---|---|---:|---:|---:|")
    for norm in a.norm:
        groups = m["speaker"].to_numpy() if norm == "speaker" else np.char.add(corpus.astype(str), split.astype(str))
        z = {k: zscore(v, groups) for k, v in raw.items()}
        for out in ("ravdess", "nemo", "urdu"):
            tr, va, te = (corpus != out) & (split != "val"), (corpus != out) & (split == "val"), corpus == out
            for spec in INPUTS:
                avg = spec.startswith("avg(")
                parts = spec.removeprefix("avg(").removesuffix(")").replace(",", "+").split("+")
                members = [z[p] for p in parts] if avg else [np.concatenate([z[p] for p in parts], 1)]
                best = None
                for c in CS:
                    clfs = [LogisticRegression(C=c, max_iter=3000).fit(x[tr], y[tr]) for x in members]

                    def proba(rows, clfs=clfs):
                        return np.mean([clf.predict_proba(x[rows]) for clf, x in zip(clfs, members)], 0)

                    v = wf1(clfs[0].classes_[proba(va).argmax(1)], va)
                    if best is None or v > best[1]:
                        best = (c, v, wf1(clfs[0].classes_[proba(te).argmax(1)], te))
                print(f"| {out} | per {norm} | {spec} | {best[0]} | {best[1]:.1f} | {best[2]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
