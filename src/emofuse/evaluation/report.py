"""Reports people read: markdown tables and confusion-matrix pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emofuse.evaluation.metrics import METRIC_NAMES


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
