"""Do pseudo-labels refined by class centroids in the unlabelled rows' own feature space (SHOT's labelling step,
Liang et al. 2020) carry a speech model from RAVDESS to nEMO better than the teacher's own answers? A check with
logistic regression on bench semi's cached features, outside the bench; settings fixed before any figure was seen.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/semi_centroids.py \
        --manifest runs/bench/semi/speech-nemo/manifest.csv --cache runs/semi-cache

bench semi's speech setting: RAVDESS's train speakers train, its val speakers validate; nEMO's train and val
speakers are unlabelled (their labels, hidden_label, only score the pseudo-labels); nEMO's test speakers test.
Features: whisper-base (layer 2, mean+std) and eGeMAPS, z-scored per speaker, as the bench standardises them.

Refinement (SHOT, its two steps, cosine distance on the z-scored inputs): centroids weighted by the teacher's
probabilities; each unlabelled row takes its nearest centroid; centroids again from those labels; nearest again.
Rows: the teacher; the student on the teacher's top half per class (bench semi's one gain on MELD); the student
on every row's refined label; the student on the refined labels' top half per class by cosine margin. Students are
the same logistic regression on RAVDESS plus the pseudo-labelled rows, weighted 0.5 in the loss (bench semi's
default).
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
from speech_coral import speech_features  # noqa: E402
from whisper_layers import per_speaker as zscore  # noqa: E402

from emofuse.config import PseudoLabelConfig  # noqa: E402
from emofuse.training.pseudo import select  # noqa: E402

C = 0.01  # the xcorpus checks' C (benchmarks/speech_coral.py); validation is printed beside each row
WEIGHT = 0.5


def refine(z: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SHOT's pseudo-labels: (labels, margin between the nearest and second-nearest centroid's cosine)."""
    f = z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)
    cent = probs.T @ f / (probs.sum(0)[:, None] + 1e-12)
    for _ in range(2):
        cn = cent / (np.linalg.norm(cent, axis=1, keepdims=True) + 1e-12)
        sim = f @ cn.T
        sim[:, probs.sum(0) < 1e-6] = -np.inf  # a class the teacher never gives has no centroid
        lab = sim.argmax(1)
        one = np.eye(probs.shape[1])[lab]
        cent = one.T @ f / (one.sum(0)[:, None] + 1e-12)
    srt = np.sort(sim, 1)
    return lab, srt[:, -1] - srt[:, -2]


def top_half(lab: np.ndarray, score: np.ndarray, classes: int) -> np.ndarray:
    """Per label, its highest-scoring half: train.pseudo_label's own selection (top_fraction 0.5)."""
    scores = np.zeros((len(lab), classes))
    scores[np.arange(len(lab)), lab] = 1.0 + score  # > 0, so each row's top class is its label
    return select(scores, PseudoLabelConfig(top_fraction=0.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=Path("runs/bench/semi/speech-nemo/manifest.csv"))
    ap.add_argument("--cache", type=Path, default=Path("runs/semi-cache"))
    a = ap.parse_args()
    m = pd.read_csv(a.manifest, dtype=str, keep_default_na=False)
    z = zscore(speech_features(m["id"], a.cache), m["speaker"].to_numpy())
    classes = sorted(set(m["label"]) - {""})
    code = {c: i for i, c in enumerate(classes)}
    y = m["label"].map(lambda v: code.get(v, -1)).to_numpy()
    hidden = m.get("hidden_label", pd.Series([""] * len(m))).map(lambda v: code.get(v, -1)).to_numpy()
    split = m["split"].to_numpy()
    tr, va, un, te = (split == "train"), (split == "val"), (split == "unlabeled"), (split == "test")
    print(f"train {tr.sum()}, val {va.sum()}, unlabelled {un.sum()}, test {te.sum()}; classes {classes}")

    def fit(rows, labels, w):
        return LogisticRegression(C=C, max_iter=3000).fit(z[rows], labels, sample_weight=w)

    def score(clf, rows, truth):
        return 100 * f1_score(truth, clf.predict(z[rows]), average="weighted")

    teacher = fit(tr, y[tr], None)
    probs = np.zeros((un.sum(), len(classes)))
    probs[:, teacher.classes_] = teacher.predict_proba(z[un])
    guess = probs.argmax(1)
    lab, margin = refine(z[un], probs)
    truth_un = hidden[un]
    acc = lambda p, keep: 100 * np.mean(p[keep] == truth_un[keep])  # noqa: E731
    every = np.ones(len(lab), bool)
    rows = {"teacher (RAVDESS only)": None,
            "student, teacher's labels, top 0.5 per class": (guess, top_half(guess, probs.max(1), len(classes))),
            "student, refined labels, every row": (lab, every),
            "student, refined labels, top 0.5 per class by margin": (lab, top_half(lab, margin, len(classes)))}
    print(f"pseudo-label accuracy on every unlabelled row: teacher {acc(guess, every):.1f} %, refined {acc(lab, every):.1f} %")
    print("| row | kept | kept right | val wF1 | test wF1 |\n|---|---:|---:|---:|---:|")
    for name, spec in rows.items():
        if spec is None:
            clf, kept, right = teacher, "–", "–"
        else:
            p, keep = spec
            idx = np.flatnonzero(tr)
            uidx = np.flatnonzero(un)[keep]
            allr = np.concatenate([idx, uidx])
            labels = np.concatenate([y[idx], p[keep]])
            w = np.concatenate([np.ones(len(idx)), np.full(len(uidx), WEIGHT)])
            clf = fit(allr, labels, w)
            kept, right = int(keep.sum()), f"{acc(p, keep):.1f} %"
        print(f"| {name} | {kept} | {right} | {score(clf, va, y[va]):.1f} | {score(clf, te, y[te]):.1f} |")
    for name, p in (("teacher", guess), ("refined", lab)):
        counts = {classes[c]: int((p == c).sum()) for c in np.unique(p)}
        print(f"{name}'s labels by class: {counts}")


if __name__ == "__main__":
    main()
