"""Calibration of class probabilities: temperature scaling, expected calibration error, reliability diagram.

Temperature scaling (Guo et al., 2017) divides the log-probabilities by one scalar T fitted on
validation; it changes confidence, never the argmax, so accuracy and F1 stay as they were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

# probabilities of exactly 0 would give log(0) = -inf; 1e-12 is far below any softmax output
# a model in fp32 produces for a class it merely dislikes
_EPS = 1e-12
# T in [0.05, 20]: outside this range the validation split is telling us about a broken model,
# not about confidence, and an unbounded search runs off to infinity on separable data
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def _check(probs: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {probs.shape}")
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64)
        if labels.shape != (probs.shape[0],):
            raise ValueError(f"labels must be ({probs.shape[0]},), got shape {labels.shape}")
    return probs, labels


def _scaled_log_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    return log_softmax(np.log(np.clip(probs, _EPS, None)) / temperature, axis=1)  # (N, C)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(label), with probabilities clipped away from 0."""
    probs, labels = _check(probs, labels)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, None))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the NLL of softmax(log(p) / T) on (validation) probabilities; 1.0 when empty."""
    probs, labels = _check(probs, labels)
    if len(labels) == 0:
        return 1.0
    rows = np.arange(len(labels))
    log_p = np.log(np.clip(probs, _EPS, None))  # (N, C)

    def nll(log_t: float) -> float:
        return float(-np.mean(log_softmax(log_p / np.exp(log_t), axis=1)[rows, labels]))

    # searched over log T: the NLL is far better conditioned there, and T stays positive
    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T): T > 1 softens, T < 1 sharpens; the argmax is unchanged."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    probs, _ = _check(probs)
    return np.exp(_scaled_log_probs(probs, temperature))


def _bins(probs: np.ndarray, labels: np.ndarray, n_bins: int):
    """Per equal-width confidence bin: (count, mean confidence, accuracy), bins left empty included."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # bin i holds confidences in (i/n, (i+1)/n]; a confidence of exactly 0 joins the first bin
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, conf_sum / counts, np.nan)
        accuracy = np.where(counts > 0, acc_sum / counts, np.nan)
    return counts, mean_conf, accuracy


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: sum over equal-width confidence bins of (bin share) * |accuracy - confidence|."""
    probs, labels = _check(probs, labels)
    if len(labels) == 0:
        return float("nan")
    counts, mean_conf, accuracy = _bins(probs, labels, n_bins)
    filled = counts > 0
    return float(np.sum(counts[filled] / counts.sum() * np.abs(accuracy[filled] - mean_conf[filled])))


def save_reliability_diagram(probs, labels, path, title: str = "", n_bins: int = 15) -> None:
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration, ECE in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs, labels = _check(probs, labels)
    counts, mean_conf, accuracy = _bins(probs, labels, n_bins)
    ece = expected_calibration_error(probs, labels, n_bins) if len(labels) else float("nan")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    width = 1.0 / n_bins
    filled = counts > 0

    fig, (ax, ax_count) = plt.subplots(
        2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.bar(edges[:-1][filled], accuracy[filled], width=width, align="edge", edgecolor="black",
           color="tab:blue", label="accuracy")
    ax.bar(edges[:-1][filled], (mean_conf - accuracy)[filled], bottom=accuracy[filled], width=width,
           align="edge", color="tab:red", alpha=0.3, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    heading = f"ECE {ece:.3f} (n={len(labels)})"
    ax.set_title(f"{title}\n{heading}" if title else heading, fontsize=9)
    ax_count.bar(edges[:-1], counts, width=width, align="edge", color="gray", edgecolor="black")
    ax_count.set_xlim(0, 1)
    ax_count.set_xlabel("confidence (max probability)")
    ax_count.set_ylabel("samples")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def calibration_summary(test_probs: np.ndarray, test_labels: np.ndarray, val_probs: np.ndarray | None = None,
                        val_labels: np.ndarray | None = None, n_bins: int = 15) -> dict:
    """Test ECE and NLL as predicted, and, when validation probabilities are given, after the
    temperature fitted on them (the argmax, hence accuracy and F1, unchanged)."""
    out = {"n_bins": n_bins, "ece": expected_calibration_error(test_probs, test_labels, n_bins),
           "nll": negative_log_likelihood(test_probs, test_labels)}
    if val_probs is not None and val_labels is not None and len(val_labels):
        t = fit_temperature(val_probs, val_labels)
        scaled = apply_temperature(test_probs, t)
        out |= {"temperature": t, "ece_calibrated": expected_calibration_error(scaled, test_labels, n_bins),
                "nll_calibrated": negative_log_likelihood(scaled, test_labels)}
    return out
