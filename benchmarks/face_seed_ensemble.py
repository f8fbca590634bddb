"""finetune_face networks trained with different seeds, their probabilities averaged (nothing fitted),
against each alone: FER2013's validation tenth and held-out test (each run's own predictions_val.csv and
predictions.csv, so the runs must share their manifest), and CK+ (every subject: faces none of them saw).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/face_seed_ensemble.py RUN [RUN ...] \
        [--ckplus runs/bench/fer24-ckplus/fer2013/manifest.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def _read(path: Path, classes: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    return list(df["id"]), df["true"].map({c: i for i, c in enumerate(classes)}).to_numpy(), df[[f"p_{c}" for c in classes]].to_numpy()


def _line(name: str, y: np.ndarray, probs: np.ndarray) -> str:
    from emofuse.scoring.metrics import bootstrap_intervals

    guess = probs.argmax(1)
    lo, hi = bootstrap_intervals(y, guess, probs.shape[1])["accuracy"]
    return f"| {name} | {100 * (guess == y).mean():.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | {len(y)} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--ckplus", type=Path, default=None, help="a CK+ manifest in FER2013's classes (bench fer2013 "
                    "-o eval_corpus=ckplus writes one); its test rows are scored")
    a = ap.parse_args()
    import json

    classes = json.loads((a.runs[0] / "labels.json").read_text())["classes"]
    for split, name in (("FER2013 validation (held-out tenth of train)", "predictions_val.csv"),
                        ("FER2013 test (held out here)", "predictions.csv")):
        got = [_read(r / name, classes) for r in a.runs]
        if any(g[0] != got[0][0] for g in got):
            raise SystemExit(f"{name}: the runs predicted different rows (not the same manifest)")
        y = got[0][1]
        print(f"\n{split}\n\n| model | accuracy [95% CI] | n |\n|---|---:|---:|")
        for r, g in zip(a.runs, got):
            print(_line(str(r), y, g[2]))
        print(_line(f"mean of the {len(a.runs)}", y, np.mean([g[2] for g in got], 0)))
    if a.ckplus:
        from emofuse.bench.fer2013 import _labels, face_run_probs

        got = [face_run_probs(r, a.ckplus, "test") for r in a.runs]
        y = _labels(a.ckplus, got[0][0])
        print(f"\nCK+ ({a.ckplus}, test rows)\n\n| model | accuracy [95% CI] | n |\n|---|---:|---:|")
        for r, g in zip(a.runs, got):
            print(_line(str(r), y, g[1]))
        print(_line(f"mean of the {len(a.runs)}", y, np.mean([g[1] for g in got], 0)))


if __name__ == "__main__":
    main()
