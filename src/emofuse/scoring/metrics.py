"""Classification metrics from scikit-learn, under the names the reports use."""

from __future__ import annotations

import warnings

import numpy as np

METRIC_NAMES = ("accuracy", "uar", "weighted_f1", "macro_f1")


def _sk():
    """scikit-learn's metrics, imported on first use: the import costs most of a second, which commands
    that score nothing (`bench --help`, `predict`) need not pay."""
    import sklearn.metrics

    return sklearn.metrics


def classification_metrics(y_true, y_pred, n_classes: int) -> dict[str, float]:
    """accuracy (= WAR), uar (unweighted average recall), weighted and macro F1, as fractions."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = list(range(n_classes))
    present = sorted(set(y_true.tolist()))
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": expected on small validation batches; the mean
        # recall over the classes that occur is exactly what UAR means here
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        uar = float(_sk().balanced_accuracy_score(y_true, y_pred)) if len(present) > 0 else 0.0
    return {
        "accuracy": float(_sk().accuracy_score(y_true, y_pred)),
        # balanced accuracy is the mean recall over the classes that occur in y_true
        "uar": uar,
        "weighted_f1": float(_sk().f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "macro_f1": float(_sk().f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
    }


def per_class(y_true, y_pred, classes: list[str]) -> list[dict]:
    p, r, f, s = _sk().precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(classes))), zero_division=0
    )
    return [
        {"class": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    ]


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    return _sk().confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


# ---------------------------------------------------------------------------------------------
# multi-label tasks (a sample may carry several classes: GoEmotions' 28 labels)


def multilabel_metrics(y_true, y_pred) -> dict[str, float]:
    """The report's four names for (N, C) 0/1 indicator arrays: accuracy is the exact-match
    (subset) accuracy, uar the mean recall and macro_f1 the mean F1 over the classes that occur in
    y_true, weighted_f1 the support-weighted F1; micro_f1 is added, as the multi-label literature
    reports it."""
    y_true = np.asarray(y_true).astype(bool)
    y_pred = np.asarray(y_pred).astype(bool)
    present = np.flatnonzero(y_true.any(0)).tolist()
    kw = dict(labels=present, zero_division=0) if present else dict(zero_division=0)
    return {
        "accuracy": float(_sk().accuracy_score(y_true, y_pred)),
        "uar": float(_sk().recall_score(y_true, y_pred, average="macro", **kw)) if present else 0.0,
        "weighted_f1": float(_sk().f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "macro_f1": float(_sk().f1_score(y_true, y_pred, average="macro", **kw)) if present else 0.0,
        "micro_f1": float(_sk().f1_score(y_true, y_pred, average="micro", zero_division=0)),
    }


def multilabel_per_class(y_true, y_pred, classes: list[str]) -> list[dict]:
    p, r, f, s = _sk().precision_recall_fscore_support(
        np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool), labels=list(range(len(classes))),
        zero_division=0,
    )
    return [
        {"class": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    ]


def multilabel_confusion(y_true, y_pred) -> np.ndarray:
    """(C, C) counts of (true class i, predicted class j) pairs over samples: the single-label
    confusion matrix when every sample has exactly one true and one predicted class."""
    y_true = np.asarray(y_true).astype(np.int64)
    y_pred = np.asarray(y_pred).astype(np.int64)
    return y_true.T @ y_pred


# ---------------------------------------------------------------------------------------------
# bootstrap confidence intervals


def scores_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, support: np.ndarray,
                        correct: np.ndarray, n: np.ndarray) -> dict[str, np.ndarray]:
    """The four metrics of B resamples from their per-class counts (B, C) and per-resample totals
    (B,), with the same conventions as classification_metrics / multilabel_metrics."""
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    occurs = support > 0
    n_occ = np.maximum(occurs.sum(1), 1)
    return {
        "accuracy": correct / np.maximum(n, 1),
        "uar": (recall * occurs).sum(1) / n_occ,
        "weighted_f1": (f1 * support).sum(1) / np.maximum(support.sum(1), 1),
        "macro_f1": (f1 * occurs).sum(1) / n_occ,
    }


def bootstrap_intervals(
    y_true, y_pred, n_classes: int | None = None, *, n_resamples: int = 1000, seed: int = 0,
    level: float = 0.95, multi_label: bool = False,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of accuracy, uar, weighted_f1 and macro_f1 over the test
    samples: `n_resamples` seeded resamples of the samples with replacement, each scored from its
    per-class counts (the same definitions as classification_metrics, vectorised so that 1000
    resamples of a 10,000-sample test set take well under a second).

    Single-label: y_true, y_pred (N,) class indices. multi_label=True: (N, C) 0/1 indicators."""
    rng = np.random.default_rng(seed)
    if multi_label:
        t = np.asarray(y_true).astype(np.float64)
        p = np.asarray(y_pred).astype(np.float64)
    else:
        c = int(n_classes) if n_classes is not None else int(max(np.max(y_true), np.max(y_pred))) + 1
        eye = np.eye(c)
        t, p = eye[np.asarray(y_true, dtype=int)], eye[np.asarray(y_pred, dtype=int)]
    n = len(t)
    if n == 0:
        return {k: [float("nan"), float("nan")] for k in METRIC_NAMES}
    hit, false_pos, miss = t * p, (1 - t) * p, t * (1 - p)  # (N, C)
    exact = (t == p).all(1).astype(np.float64)  # (N,)
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n_resamples, 100):  # chunks keep the (B, N) draw counts small
        # (b, N) how often each sample is drawn in each resample
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(100, n_resamples - start)).astype(np.float64)
        parts.append(scores_from_counts(w @ hit, w @ false_pos, w @ miss, w @ t, w @ exact, w.sum(1)))
    scores = {k: np.concatenate([s[k] for s in parts]) for k in METRIC_NAMES}
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {k: [float(np.percentile(v, lo)), float(np.percentile(v, hi))] for k, v in scores.items()}
