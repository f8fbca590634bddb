"""Would graph-based label spreading (Zhou et al. 2004, scikit-learn's LabelSpreading on a k-nearest-neighbour
graph) label MELD's unlabelled utterances better than bench semi's teacher? A check on bench semi's MELD setting
(10 % of the training labels; frozen MiniLM sentence vectors, L2-normalised), outside the bench:

    OMP_WAIT_POLICY=PASSIVE python benchmarks/semi_spread.py \
        --manifest runs/bench/semi-align/meld-10pct/manifest.csv --cache runs/semi-cache

For each labeller: the share of the 8,991 unlabelled utterances it labels right (their hidden labels), and of the
top half per predicted class by confidence (the rows bench semi's one gain kept). The teacher here is logistic
regression on the labelled tenth (its C beside MELD dev's weighted F1); the spreading runs over the labelled and
unlabelled rows together, k and alpha on a small grid. Nothing is trained on the result.
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
from sklearn.semi_supervised import LabelSpreading  # noqa: E402


def top_half(probs: np.ndarray) -> np.ndarray:
    """The top half per predicted class by confidence: bench semi's `select` with top_fraction 0.5."""
    from emofuse.config import PseudoLabelConfig
    from emofuse.training.pseudo import select

    return select(probs, PseudoLabelConfig(top_fraction=0.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=Path("runs/bench/semi-align/meld-10pct/manifest.csv"))
    ap.add_argument("--cache", type=Path, default=Path("runs/semi-cache"))
    a = ap.parse_args()
    from emofuse.features.cache import load_features

    m = pd.read_csv(a.manifest, dtype=str, keep_default_na=False)
    t = load_features(a.cache, "meld", "minilm")
    index = {k: i for i, k in enumerate(t.ids)}
    x = t.vectors[[index[k] for k in m["id"]]].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    classes = sorted(set(m["label"]) - {""})
    code = {c: i for i, c in enumerate(classes)}
    lab, unl, val = (m["split"] == s for s in ("train", "unlabeled", "val"))
    lab, unl, val = lab.to_numpy(), unl.to_numpy(), val.to_numpy()
    y = m["label"].map(code).fillna(-1).astype(int).to_numpy()
    hidden = m["hidden_label"].map(code).fillna(-1).astype(int).to_numpy()[unl]
    print(f"{lab.sum()} labelled, {unl.sum()} unlabelled utterances")
    print("| labeller | right, every unlabelled row | right, top half per class | MELD dev wF1 |")
    print("|---|---:|---:|---:|")
    for c in (0.3, 1.0, 3.0, 10.0):
        lr = LogisticRegression(C=c, max_iter=2000).fit(x[lab], y[lab])
        p = lr.predict_proba(x[unl])
        dev = f1_score(y[val], lr.predict(x[val]), average="weighted")
        print(f"| logistic regression, C {c:g} | {100 * np.mean(p.argmax(1) == hidden):.1f} % | "
              f"{100 * np.mean(p.argmax(1)[top_half(p)] == hidden[top_half(p)]):.1f} % | {100 * dev:.1f} |")
    pool = lab | unl
    for k in (10, 30):
        for alpha in (0.2, 0.8):
            spread = LabelSpreading(kernel="knn", n_neighbors=k, alpha=alpha, max_iter=100).fit(
                x[pool], np.where(lab, y, -1)[pool])
            d = spread.label_distributions_[~lab[pool]]
            print(f"| label spreading, k {k}, alpha {alpha:g} | {100 * np.mean(d.argmax(1) == hidden):.1f} % | "
                  f"{100 * np.mean(d.argmax(1)[top_half(d)] == hidden[top_half(d)]):.1f} % | – |")


if __name__ == "__main__":
    main()
