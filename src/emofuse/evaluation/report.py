"""Reports people read: markdown tables, confusion-matrix, reliability, learning-curve and ablation pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emofuse.scoring.metrics import METRIC_NAMES


def save_confusion_png(cm: np.ndarray, classes: list[str], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    path = Path(path)
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2, 1.0 * len(classes) + 1.5))
    ConfusionMatrixDisplay(cm, display_labels=classes).plot(ax=ax, cmap="Blues", colorbar=False, values_format="d")
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_history(history: list[dict], folder: str | Path, kept_epoch: int, monitor: str, title: str = "") -> Path:
    """A fit's learning curve: history.csv (one row per validation check: epoch, optimiser steps,
    train loss, every val_* metric) and curves.png (losses; validation weighted F1 and accuracy;
    the epoch whose weights were kept, by `monitor`, marked). Returns the picture's path."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    df = pd.DataFrame(history)
    df.to_csv(folder / "history.csv", index=False)
    # several checks per epoch: place each at its fraction of the epochs
    x = df["step"] / df["step"].max() * df["epoch"].max() if df["epoch"].duplicated().any() else df["epoch"]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 3.6))
    for col, label in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        if col in df and df[col].notna().any():
            ax_loss.plot(x, df[col], marker=".", label=label)
    scores = [c for c in ("val_weighted_f1", "val_accuracy", "val_micro_f1", "val_macro_f1") if c in df][:2]
    for col in scores:
        ax_score.plot(x, 100 * df[col], marker=".", label=col.removeprefix("val_").replace("_f1", " F1").replace("_", " "))
    for ax in (ax_loss, ax_score):
        if kept_epoch > 0:
            ax.axvline(kept_epoch, color="grey", linestyle="--", linewidth=1, label=f"kept (epoch {kept_epoch}, {monitor})")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set_title("loss")
    ax_score.set_title("validation (%)")
    fig.suptitle(title)
    fig.tight_layout()
    path = folder / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_ablation_png(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """An ablation's rows at a glance: per variant, test weighted F1 as a bar (mean over its seeds, ± their
    std), each seed's test figure as a dot, and validation's mean as a hollow diamond; the number of seeds
    beside each bar (rows of different seeds sit side by side, as in table.md)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    height = 0.45 * len(rows) + 1.9
    fig, ax = plt.subplots(figsize=(8, height))
    y = np.arange(len(rows))[::-1]  # the config's first variant on top
    test = np.array([100 * r["test"]["weighted_f1"] for r in rows])
    ax.barh(y, test, color="#4c72b0", alpha=0.75, label="test (mean ± std over seeds)")
    several = np.array([len(r["seeds"]) > 1 for r in rows], bool)
    if several.any():  # a one-seed row has no spread to draw
        std = np.array([100 * (r["test"].get("weighted_f1_std") or 0.0) for r in rows])
        ax.errorbar(test[several], y[several], xerr=std[several], fmt="none", ecolor="black", capsize=3)
    for yi, r in zip(y, rows):
        seeds = r.get("per_seed", {}).get("test", [])
        if len(seeds) > 1:
            ax.scatter([100 * v for v in seeds], [yi] * len(seeds), color="black", s=12, zorder=3)
        ax.text(1, yi, f"{len(r['seeds'])} seed{'s' if len(r['seeds']) > 1 else ''}", va="center", fontsize=7,
                color="white" if 100 * r["test"]["weighted_f1"] > 10 else "black")  # inside the bar where it fits
    ax.scatter([100 * r["val"]["weighted_f1"] for r in rows], y, marker="D", facecolors="none", edgecolors="#dd8452",
               zorder=4, label="validation (mean)")
    ax.scatter([], [], color="black", s=12, label="test, each seed")
    ax.set_yticks(y, [r["variant"] for r in rows])
    ax.set_xlim(0, 100)
    ax.set_xlabel("weighted F1 (%)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=3)
    ax.set_title(title)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))  # room for the legend below
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def metrics_table(results: dict[str, dict[str, float]], best: str | None = None) -> str:
    """Markdown table, one row per model, metrics as percentages."""
    head = "| model | " + " | ".join(METRIC_NAMES) + " |"
    sep = "|---|" + "---:|" * len(METRIC_NAMES)
    rows = [head, sep]
    for name, m in results.items():
        cells = []
        for k in METRIC_NAMES:
            v = m.get(k)
            cells.append("" if v is None else f"{100 * v:.1f}")
        label = f"**{name}**" if name == best else name
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def per_class_table(rows: list[dict]) -> str:
    out = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(
            f"| {r['class']} | {100 * r['precision']:.1f} | {100 * r['recall']:.1f} | {100 * r['f1']:.1f} | {r['support']} |"
        )
    return "\n".join(out)


def read_probs(path: Path, classes: list[str]) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(ids, labels (N,), probabilities (N, C)) of the labelled single-label rows of a predictions
    CSV; None when the file is missing or multi-label (classes joined by ';', or rows not summing to 1)."""
    import pandas as pd

    if not Path(path).is_file():
        return None
    df = pd.read_csv(path, dtype={"id": str, "true": str, "predicted": str}, keep_default_na=False)
    cols = [f"p_{c}" for c in classes]
    if not set(cols) <= set(df.columns) or df["true"].str.contains(";").any():
        return None
    df = df[df["true"].isin(classes)]
    probs = df[cols].to_numpy(np.float64)
    # per-class sigmoids (multi-label runs whose rows happen to carry one label each) are no distribution
    if not len(df) or not np.allclose(probs.sum(1), 1.0, atol=0.01):
        return None
    return df["id"].tolist(), df["true"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64), probs


def write_calibration(run_dir: str | Path, classes: list[str], title: str = "") -> dict:
    """Calibration of a finished run from its predictions.csv (test) and predictions_val.csv:
    test ECE and NLL as predicted and after a temperature fitted on validation (see
    scoring.calibration), and reliability.png (test, as predicted). Returns the figures for
    metrics.json, or {} for multi-label runs or runs without probabilities."""
    from emofuse.scoring.calibration import calibration_summary, save_reliability_diagram

    run_dir = Path(run_dir)
    test = read_probs(run_dir / "predictions.csv", classes)
    if test is None:
        return {}
    _, y_test, p_test = test
    _, y_val, p_val = read_probs(run_dir / "predictions_val.csv", classes) or (None, None, None)
    summary = calibration_summary(p_test, y_test, p_val, y_val)
    save_reliability_diagram(p_test, y_test, run_dir / "reliability.png", title=title or f"{run_dir.name} (test)")
    return summary
