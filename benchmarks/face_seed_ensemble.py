"""finetune_face networks trained with different seeds, their probabilities averaged (nothing fitted),
against each alone: FER2013's validation tenth and held-out test (the runs must share their manifest),
and CK+ (every subject: faces none of them saw).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/face_seed_ensemble.py RUN [RUN ...] \
        [--ckplus runs/bench/fer24-ckplus/fer2013/manifest.csv] [--tta-shift 0 1 2]

A member may also be a saved face network folder (its config.json, as `src/emofuse/assets/face-net` or a
run's encoder/): it is predicted on the runs' manifest with the face encoder, as `bench fer2013 -o face_run=`
predicts one (`bench.fer2013.face_run_probs`). At least one member must be a run: its manifest is the one read.

Without --tta-shift, FER2013's figures are each run's own saved predictions (predictions_val.csv,
predictions.csv). With it, every split is predicted again once per test-time shift (finetune_face's
`tta_shift`, pixels; 0 = the face and its mirror image only), and the rows of all shifts are printed
side by side, so that the shift is chosen on validation like any other row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _read(path: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    return list(df["id"]), df[[f"p_{c}" for c in classes]].to_numpy()


def _cell(y: np.ndarray, probs: np.ndarray) -> str:
    from emofuse.scoring.metrics import bootstrap_intervals

    guess = probs.argmax(1)
    lo, hi = bootstrap_intervals(y, guess, probs.shape[1])["accuracy"]
    return f"{100 * (guess == y).mean():.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--ckplus", type=Path, default=None, help="a CK+ manifest in FER2013's classes (bench fer2013 "
                    "-o eval_corpus=ckplus writes one); its test rows are scored")
    ap.add_argument("--tta-shift", type=int, nargs="+", default=None, metavar="PIXELS",
                    help="predict every split again with these test-time shifts (one table row per shift)")
    a = ap.parse_args()
    from emofuse.bench.fer2013 import _labels, face_run_probs, is_face_network
    from emofuse.config import RunConfig, load_config

    runs = [r for r in a.runs if not is_face_network(r)]
    if not runs:
        raise SystemExit("give at least one finetune_face run folder: its manifest's rows are the ones scored")
    classes = json.loads((runs[0] / "labels.json").read_text())["classes"]
    from emofuse.labels import FER7

    if any(is_face_network(r) for r in a.runs) and list(classes) != list(FER7.classes):
        raise SystemExit(f"a saved network answers in FER2013's class order; the runs' classes are {classes}")
    own = {load_config(RunConfig, r / "config.yaml").data.manifest for r in runs}
    if len(own) > 1:
        raise SystemExit(f"the runs were trained on different manifests ({sorted(own)}): their validation differs")
    fer = Path(own.pop())
    splits = [("FER2013 validation", fer, "val", "predictions_val.csv"), ("FER2013 held-out test", fer, "test", "predictions.csv")]
    if a.ckplus:
        splits.append(("CK+, all subjects", a.ckplus, "test", None))
    shifts = a.tta_shift if a.tta_shift is not None else [None]
    names = [str(r) for r in a.runs] + [f"mean of the {len(a.runs)}"]
    cells: dict[tuple, str] = {}
    sizes = []
    for title, manifest, split, saved in splits:
        for shift in shifts:
            t = time.perf_counter()
            got = []  # (ids, probabilities) per member
            for r in a.runs:
                if shift is None and saved and not is_face_network(r):
                    got.append(_read(r / saved, classes))
                else:
                    got.append(face_run_probs(r, manifest, split, tta_shift=shift))
            ref = got[0][0]
            if any(sorted(g[0]) != sorted(ref) for g in got):
                raise SystemExit(f"{title}: the members predicted different rows")
            probs = []  # each member's rows in the first member's order
            for ids, p in got:
                where = {k: i for i, k in enumerate(ids)}
                probs.append(p[[where[k] for k in ref]])
            y = _labels(manifest, ref)
            for name, p in zip(names, probs + [np.mean(probs, 0)]):
                cells[(name, shift, title)] = _cell(y, p)
            print(f"  {title}, shift {shift}: {time.perf_counter() - t:.0f} s", flush=True)
        sizes.append(f"{title} ({len(y)})")
    print("\nAccuracy [95% bootstrap CI]\n")
    print("| model | test-time shift (px) | " + " | ".join(sizes) + " |")
    print("|---|---:|" + "---:|" * len(splits))
    for shift in shifts:
        for name in names:
            label = "as saved (flip)" if shift is None else str(shift)
            print(f"| {name} | {label} | " + " | ".join(cells[(name, shift, s[0])] for s in splits) + " |")


if __name__ == "__main__":
    main()
