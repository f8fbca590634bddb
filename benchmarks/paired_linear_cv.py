"""The bench's linear baseline on `bench paired`, with C chosen the way train.cross_validation: speaker
chooses the project's epoch budget: speaker-grouped folds over the training + validation actors, then
one refit on all of them, scored once on test. Prints test weighted F1 for C chosen on the 104-sample
validation split (as the bench) and by speaker-CV, side by side (same features, same standardisation).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/paired_linear_cv.py --manifest runs/bench/paired/paired/manifest.csv \\
        --cache runs/bench/paired/cache"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold

from emofuse.corpora.base import Manifest
from emofuse.data.dataset import FeatureDataset

CS = (0.001, 0.01, 0.1, 1.0, 10.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    m = Manifest.load(a.manifest)
    m.df = m.df.reset_index(drop=True)
    data = FeatureDataset.from_manifest(m, a.cache, {"audio": "egemaps", "text": "minilm", "video": "fer2013"})
    data = data.per_speaker_standardised(keys=["audio"])
    x = np.concatenate([np.where(f.present[:, None], f.vectors, 0.0) for _, f in sorted(data.features.items())], 1)
    y, split = data.labels, m.df["split"].to_numpy()
    speakers = m.df["speaker"].astype(str).to_numpy()
    tr, va, te = (np.flatnonzero(split == s) for s in ("train", "val", "test"))

    def fit(rows, c):
        mean, std = x[rows].mean(0), x[rows].std(0)
        z = lambda r: (x[r] - mean) / np.where(std > 1e-6, std, 1.0)  # noqa: E731
        return LogisticRegression(C=c, max_iter=300, tol=1e-3).fit(z(rows), y[rows]), z

    def wf1(clf, z, rows):
        return f1_score(y[rows], clf.predict(z(rows)), average="weighted")

    # as the bench: C by the validation split
    val_scores = {c: wf1(*fit(tr, c), va) for c in CS}
    c_val = max(CS, key=lambda c: (val_scores[c], -c))
    clf, z = fit(tr, c_val)
    print(f"C on the validation split ({len(va)} rows): C={c_val}, val wF1 {100 * val_scores[c_val]:.1f}, "
          f"test wF1 {100 * wf1(clf, z, te):.1f}")
    # speaker-CV over train + val actors, then refit on all of them
    pool = np.concatenate([tr, va])
    folds = list(StratifiedGroupKFold(a.folds, shuffle=True, random_state=0).split(pool, y[pool], speakers[pool]))
    cv = {c: np.mean([wf1(*fit(pool[i], c), pool[j]) for i, j in folds]) for c in CS}
    c_cv = max(CS, key=lambda c: (cv[c], -c))
    clf, z = fit(pool, c_cv)
    print(f"C by {a.folds} speaker folds over {len(set(speakers[pool]))} actors: C={c_cv}, fold-mean wF1 "
          f"{100 * cv[c_cv]:.1f}, refit test wF1 {100 * wf1(clf, z, te):.1f}")


if __name__ == "__main__":
    main()
