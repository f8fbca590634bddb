"""A saved face network (by default the one the package ships) predicted with test-time shifts, side by
side: accuracy on FER2013's validation fold and held-out test fold, one row per shift, so that the shift
is chosen on validation. Shift 0 is the face and its mirror image only; shift N adds the face moved N pixels
each way, and their mirrors (10 views; finetune_face's and the encoders' `tta_shift`).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/face_tta_shift.py MANIFEST [--folder DIR] [--shift 0 1 2]

MANIFEST holds FER2013 rows in the folds the network was trained on (the `face/manifest.csv` that
`emofuse build-model` writes under its work folder, or `bench fer2013`'s manifest); only its val and test
rows are read. Nothing is fitted: the network's own argmax is scored.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--folder", type=Path, default=None, help="a saved face network (default: the shipped one)")
    ap.add_argument("--shift", type=int, nargs="+", default=[0, 1, 2], metavar="PIXELS")
    a = ap.parse_args()
    from PIL import Image

    from emofuse.features.encoders.face_net import SHIPPED, FaceNetEncoder
    from emofuse.labels import FER7  # the network's outputs, in FER2013's order
    from emofuse.scoring.metrics import bootstrap_intervals

    df = pd.read_csv(a.manifest, dtype={"id": str}, keep_default_na=False)
    unknown = sorted(c for c in set(df["label"]) if not FER7.is_known(c))
    if unknown:
        raise SystemExit(f"{a.manifest}: labels outside the network's classes: {unknown}")
    splits = {s: df[df["split"] == s] for s in ("val", "test")}
    if any(len(rows) == 0 for rows in splits.values()):
        raise SystemExit(f"{a.manifest}: needs val and test rows")
    images = {s: np.stack([np.asarray(Image.open(p).convert("RGB")) for p in rows["video"]]) for s, rows in splits.items()}
    truth = {s: rows["label"].map(FER7.index).to_numpy() for s, rows in splits.items()}
    print(f"network: {a.folder or SHIPPED}; rows: val {len(truth['val'])}, test {len(truth['test'])}")
    print("| test-time shift (px) | views | FER2013 validation | FER2013 held-out test | seconds |")
    print("|---:|---:|---:|---:|---:|")
    for shift in a.shift:
        enc = FaceNetEncoder(a.folder or SHIPPED, tta_shift=shift)
        t = time.perf_counter()
        cells = []
        for s in ("val", "test"):
            guess = enc.frames(images[s])[:, :len(FER7)].argmax(1)
            lo, hi = bootstrap_intervals(truth[s], guess, len(FER7))["accuracy"]
            cells.append(f"{100 * (guess == truth[s]).mean():.1f} [{100 * lo:.1f}, {100 * hi:.1f}]")
        views = (5 if shift else 1) * (2 if enc.tta_flip else 1)
        print(f"| {shift} | {views} | {cells[0]} | {cells[1]} | {time.perf_counter() - t:.1f} |", flush=True)


if __name__ == "__main__":
    main()
