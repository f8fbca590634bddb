"""Is run B better than run A on the same test set, or could the difference be luck of the draw?

Two tests on the predictions of both runs, paired by sample id (never by row order):
- paired bootstrap: the test set is resampled with replacement (the same resample for both runs)
  and the difference in weighted F1 and in accuracy is computed on each resample; the 2.5th and
  97.5th percentiles give a 95% confidence interval of the difference. An interval that excludes 0
  says the ranking would hold on another test set drawn like this one.
- McNemar's test on the utterances exactly one run gets right (exact binomial, two-sided): whether
  the two runs' accuracies differ beyond chance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# the vectorised per-resample scores bootstrap_intervals uses: the same definitions as classification_metrics
from emofuse.scoring.metrics import classification_metrics, scores_from_counts


@dataclass
class Difference:
    metric: str  # "weighted_f1" | "accuracy"
    a: float
    b: float
    diff: float  # b - a
    low: float  # confidence interval of b - a
    high: float
    p_value: float  # two-sided bootstrap p-value of b - a = 0 (from the resamples' sign)


@dataclass
class Comparison:
    run_a: str
    run_b: str
    n: int  # test samples both runs predicted
    n_boot: int
    confidence: float
    differences: list[Difference]
    only_a_right: int  # McNemar's discordant pairs
    only_b_right: int
    mcnemar_p: float

    def to_dict(self) -> dict:
        return asdict(self)


def _load(run: Path):
    import pandas as pd

    f = run / "predictions.csv" if run.is_dir() else run
    if not f.is_file():
        raise FileNotFoundError(f"{run}: no predictions.csv (give a run directory or a predictions file)")
    df = pd.read_csv(f, dtype={"id": str, "true": str, "predicted": str}, keep_default_na=False)
    missing = {"id", "true", "predicted"} - set(df.columns)
    if missing:
        raise ValueError(f"{f}: missing columns {sorted(missing)}")
    df = df[df["true"] != ""]
    if df["id"].duplicated().any():
        raise ValueError(f"{f}: repeated ids (a cross-validated run with several seeds?); compare one prediction per id")
    return df.set_index("id")


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs under H0 split as a fair coin."""
    from scipy.stats import binomtest

    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(min(only_a, only_b), n, 0.5).pvalue)


def compare_runs(run_a: str | Path, run_b: str | Path, n_boot: int = 10_000, seed: int = 0,
                 confidence: float = 0.95) -> Comparison:
    """Paired bootstrap CIs of the differences (B - A) in weighted F1 and accuracy, and McNemar's
    test, on the test ids both runs share; the id sets and true labels must agree."""
    a, b = _load(Path(run_a)), _load(Path(run_b))
    if set(a.index) != set(b.index):
        raise ValueError(f"the runs were tested on different ids: {len(a)} in A, {len(b)} in B, "
                         f"{len(set(a.index) & set(b.index))} shared; compare runs on the same test split")
    b = b.loc[a.index]
    if (a["true"] != b["true"]).any():
        raise ValueError(f"{int((a['true'] != b['true']).sum())} ids have different true labels in the two runs: "
                         "different manifests or label sets?")
    classes = sorted(set(a["true"]) | set(a["predicted"]) | set(b["predicted"]))
    index = {c: i for i, c in enumerate(classes)}
    y = a["true"].map(index).to_numpy()
    pa, pb = a["predicted"].map(index).to_numpy(), b["predicted"].map(index).to_numpy()
    n, c = len(y), len(classes)

    rng = np.random.default_rng(seed)
    eye = np.eye(c)
    t = eye[y]  # (N, C)
    counts = {}
    for run, pred in (("a", pa), ("b", pb)):
        p = eye[pred]
        counts[run] = (t * p, (1 - t) * p, t * (1 - p), (pred == y).astype(np.float64))  # tp, fp, fn, correct
    diffs = {"weighted_f1": [], "accuracy": []}
    for start in range(0, n_boot, 100):  # chunks keep the (R, N) draw counts small
        # (R, N): how often each sample is drawn in each resample; the same draws score both runs
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(100, n_boot - start)).astype(np.float64)
        s = {run: scores_from_counts(w @ tp, w @ fp, w @ fn, w @ t, w @ ok, w.sum(1))
             for run, (tp, fp, fn, ok) in counts.items()}
        for metric in diffs:
            diffs[metric].append(s["b"][metric] - s["a"][metric])
    alpha = (1 - confidence) / 2
    out = []
    point = {"a": classification_metrics(y, pa, c), "b": classification_metrics(y, pb, c)}
    for metric, d in diffs.items():
        d = np.concatenate(d)
        va, vb = point["a"][metric], point["b"][metric]
        # two-sided: twice the share of resamples on the far side of 0 from the observed difference
        side = (d <= 0).mean() if vb >= va else (d >= 0).mean()
        out.append(Difference(metric, va, vb, vb - va, float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha)),
                              float(min(1.0, 2 * side))))
    only_a = int(((pa == y) & (pb != y)).sum())
    only_b = int(((pa != y) & (pb == y)).sum())
    return Comparison(str(run_a), str(run_b), n, n_boot, confidence, out, only_a, only_b, mcnemar_exact(only_a, only_b))


_NAMES = {"weighted_f1": "weighted F1", "accuracy": "accuracy"}


def describe(cmp: Comparison, alpha: float = 0.05) -> str:
    """The comparison in words a reader can act on."""
    pct = int(round(100 * cmp.confidence))
    lines = [f"A = {cmp.run_a}", f"B = {cmp.run_b}",
             f"{cmp.n} test samples, paired by id; bootstrap: {cmp.n_boot} resamples of them.", ""]
    for d in cmp.differences:
        name = _NAMES[d.metric]
        p_text = f"p = {d.p_value:.3g}" if d.p_value > 0 else f"p < {1 / cmp.n_boot:.1g}"  # no resample crossed 0
        lines.append(f"{name}: A {100 * d.a:.1f}, B {100 * d.b:.1f}; B − A = {100 * d.diff:+.1f} points, "
                     f"{pct}% CI [{100 * d.low:+.1f}, {100 * d.high:+.1f}], bootstrap {p_text}.")
        if d.low > 0 or d.high < 0:
            better = "B" if d.diff > 0 else "A"
            lines.append(f"  → {better} is better on {name}: the interval excludes 0, so the ranking would very "
                         "likely hold on another test set drawn like this one.")
        else:
            lines.append(f"  → no reliable difference in {name}: the interval includes 0, and this test set "
                         "cannot tell the two runs apart on it.")
    p = cmp.mcnemar_p
    lines += ["", f"McNemar: {cmp.only_a_right} samples only A got right, {cmp.only_b_right} only B got right; "
                  f"exact two-sided p = {p:.3g}."]
    if p < alpha:
        better = "B" if cmp.only_b_right > cmp.only_a_right else "A"
        lines.append(f"  → {better} gets significantly more samples right (p < {alpha:g}).")
    else:
        lines.append(f"  → the runs' errors differ no more than chance would make them (p ≥ {alpha:g}); "
                     "do not claim one is more accurate.")
    return "\n".join(lines)
