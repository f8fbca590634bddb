"""The default model's face networks on FER2013's held-out validation and test tenths, each 48x48 image decoded
at 64 pixels (the build's face-image decoding, FACE_IMAGES) or at 48 (the networks' own size, as bench fer2013's
network rows read them). Nothing fitted: the arg-max of the encoder's averaged probabilities.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/face_decode_size.py [--manifest runs/emofuse-base6/work/face/manifest.csv]

The manifest is `emofuse build-model`'s face step's (FER2013's training images in its folds)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# the build's 7-class names of FER2013's folders -> the networks' own (FER2013's) names
TO_FER = {"fearful": "fear", "surprised": "surprise"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=Path("runs/emofuse-base6/work/face/manifest.csv"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 48])
    a = ap.parse_args()
    from emofuse.features.encoders.face_net import SHIPPED_NETS, FaceNetEncoder
    from emofuse.media.faces import crop_image_file

    m = pd.read_csv(a.manifest)
    enc = FaceNetEncoder(SHIPPED_NETS, name="emofuse-face")
    classes = np.array(enc.cfg["classes"])
    print("| split | decoded at (px) | accuracy | seconds |\n|---|---:|---:|---:|")
    for split in ("val", "test"):
        rows = m[m["split"] == split]
        truth = rows["label"].replace(TO_FER).to_numpy()
        for size in a.sizes:
            t = time.perf_counter()
            crops = np.stack([crop_image_file(p, size, detect=False).image for p in rows["video"]])
            pred = classes[enc.frames(crops)[:, :7].argmax(1)]
            print(f"| {split} | {size} | {100 * (pred == truth).mean():.1f} | {time.perf_counter() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
