"""Does aligning the labelled speech's feature covariance to an unlabelled corpus (CORAL, Sun et al. 2016) carry a
speech model across corpora? A check with logistic regression on cached features, outside any bench.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/speech_coral.py \
        --manifest runs/emofuse-base5/work/speech/manifest.csv --cache runs/base-cache

The manifest and the cache are `emofuse build-model`'s speech step's (RAVDESS, nEMO, URDU in the 7-class space;
whisper-base layer 2 mean+std and eGeMAPS under corpus `speech-xcorpus`). Features: both, z-scored per speaker
(or per corpus), as bench speech-xcorpus and bench semi standardise them. CORAL: the labelled rows are whitened
with their own covariance and coloured with the unlabelled rows' (each + the identity, lambda 1), then the same
logistic regression is trained. Nothing is tuned: both Cs are printed.

- semi: bench semi's speech setting. RAVDESS's train speakers train, its val speakers validate; nEMO's
  train and val speakers are the unlabelled rows CORAL aligns to; nEMO's test speakers test.
- loco-X: bench speech-xcorpus's tasks. The other two corpora's train speakers train, their val speakers
  validate; CORAL aligns to all of X (unlabelled), which also tests, as per-corpus z-scores already use X's
  own statistics.
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

CS = (0.01, 0.1)


def _root(c: np.ndarray, power: float) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.clip(w, 1e-6, None) ** power) @ v.T


def coral(z: np.ndarray, src: np.ndarray, tgt: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """z with the src rows re-coloured to the tgt rows' covariance."""
    eye = lam * np.eye(z.shape[1])
    a = _root(np.cov(z[src], rowvar=False) + eye, -0.5) @ _root(np.cov(z[tgt], rowvar=False) + eye, 0.5)
    out = z.copy()
    out[src] = z[src] @ a
    return out


def speech_features(ids, cache: Path) -> np.ndarray:
    """Whisper-base (layer 2, mean+std) and eGeMAPS of these clips, side by side, from a cache of the speech
    benches (corpus `speech-xcorpus`)."""
    from emofuse.features.cache import load_features

    parts = []
    for enc in ("whisper-base", "egemaps"):
        t = load_features(cache, "speech-xcorpus", enc)
        index = {k: i for i, k in enumerate(t.ids)}
        parts.append(t.vectors[[index[k] for k in ids]].astype(np.float64))
    return np.concatenate(parts, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=Path("runs/emofuse-base5/work/speech/manifest.csv"))
    ap.add_argument("--cache", type=Path, default=Path("runs/base-cache"))
    a = ap.parse_args()
    m = pd.read_csv(a.manifest)
    corpus = m["id"].str.split(":").str[0].to_numpy()
    split = m["split"].to_numpy()
    x = speech_features(m["id"], a.cache)
    classes = sorted(m["label"].unique())
    y = m["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()

    def wf1(clf, z, rows):
        return 100 * f1_score(y[rows], clf.predict(z[rows]), average="weighted")

    print("| setting | z-scores | C | plain: test wF1 (val) | CORAL: test wF1 (val) |\n|---|---|---:|---:|---:|")
    for norm in ("speaker", "corpus"):
        z = zscore(x, m["speaker"].to_numpy() if norm == "speaker" else corpus)
        tasks = {"semi: RAVDESS -> nEMO": ((corpus == "ravdess") & (split == "train"),
                                          (corpus == "ravdess") & (split == "val"),
                                          (corpus == "nemo") & np.isin(split, ["train", "val"]),
                                          (corpus == "nemo") & (split == "test"))}
        for out in ("ravdess", "nemo", "urdu"):
            tasks[f"loco-{out}"] = ((corpus != out) & (split == "train"), (corpus != out) & (split == "val"),
                                    corpus == out, corpus == out)
        for name, (src, val, unl, test) in tasks.items():
            zc = coral(z, src, unl)
            for c in CS:
                plain = LogisticRegression(C=c, max_iter=3000).fit(z[src], y[src])
                aligned = LogisticRegression(C=c, max_iter=3000).fit(zc[src], y[src])
                print(f"| {name} | per {norm} | {c} | {wf1(plain, z, test):.1f} ({wf1(plain, z, val):.1f}) "
                      f"| {wf1(aligned, zc, test):.1f} ({wf1(aligned, zc, val):.1f}) |", flush=True)


if __name__ == "__main__":
    main()
