"""A saved face network (by default the one the package ships) predicted with test-time shifts, side by
side: accuracy on FER2013's validation fold and held-out test fold, one row per shift, so that the shift
is chosen on validation. Shift 0 is the face and its mirror image only; shift N adds the face moved N pixels
each way, and their mirrors (10 views; finetune_face's and the encoders' `tta_shift`).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/face_tta_shift.py MANIFEST [--folder DIR ...] [--shift 0 1 2] [--decode-size PX]

MANIFEST holds FER2013 rows in the folds the network was trained on (the `face/manifest.csv` that
`emofuse build-model` writes under its work folder, or `bench fer2013`'s manifest); only its val and test
rows are read. Nothing is fitted: the network's own argmax is scored. Several --folder networks are averaged
as one encoder (the default model's face expert: `--folder` each of SHIPPED_NETS). --decode-size PX decodes each
image as the face-image path does (`crop_image_file`, resized to PX: FACE_IMAGES' 64 px is how the build
decoded FER2013 before it read it at 48, bench/emofuse_base.py: FER_SIZE) instead of at its own size.
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
    ap.add_argument("--folder", type=Path, nargs="+", default=None,
                    help="saved face networks, averaged (default: the shipped seed-0 one)")
    ap.add_argument("--shift", type=int, nargs="+", default=[0, 1, 2], metavar="PIXELS")
    ap.add_argument("--decode-size", type=int, default=None, metavar="PX",
                    help="decode each image through the face-image path at PX pixels (default: its own size)")
    a = ap.parse_args()
    from PIL import Image

    from emofuse.features.encoders.face_net import SHIPPED, FaceNetEncoder
    from emofuse.media.faces import crop_image_file
    from emofuse.labels import FER7  # the network's outputs, in FER2013's order
    from emofuse.scoring.metrics import bootstrap_intervals

    df = pd.read_csv(a.manifest, dtype={"id": str}, keep_default_na=False)
    unknown = sorted(c for c in set(df["label"]) if not FER7.is_known(c))
    if unknown:
        raise SystemExit(f"{a.manifest}: labels outside the network's classes: {unknown}")
    splits = {s: df[df["split"] == s] for s in ("val", "test")}
    if any(len(rows) == 0 for rows in splits.values()):
        raise SystemExit(f"{a.manifest}: needs val and test rows")
    def decode(path: str) -> np.ndarray:
        if a.decode_size:
            return crop_image_file(path, a.decode_size, detect=False).image
        return np.asarray(Image.open(path).convert("RGB"))

    images = {s: np.stack([decode(p) for p in rows["video"]]) for s, rows in splits.items()}
    folders = a.folder or [SHIPPED]
    truth = {s: rows["label"].map(FER7.index).to_numpy() for s, rows in splits.items()}
    print(f"networks: {', '.join(map(str, folders))}; decoded at {a.decode_size or 'their own size'}; rows: "
          f"val {len(truth['val'])}, test {len(truth['test'])}")
    print("| test-time shift (px) | views | FER2013 validation | FER2013 held-out test | seconds |")
    print("|---:|---:|---:|---:|---:|")
    for shift in a.shift:
        enc = FaceNetEncoder(folders, tta_shift=shift)
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
