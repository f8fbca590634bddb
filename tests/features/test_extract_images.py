"""Still images in a manifest's video cell go through the face path as one-frame clips."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.features import extract, load_features
from emofuse.labels import FER7


def test_images_are_one_frame_clips(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, ext in enumerate((".jpg", ".png")):
        p = tmp_path / f"face{i}{ext}"
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(p)
        paths.append(str(p))
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": f"f{i}", "split": "train", "fold": -1, "label": "happy", "video": p}
            for i, p in enumerate(paths)]
    m = Manifest("faces", FER7, pd.DataFrame(rows, columns=MANIFEST_COLUMNS))
    # an audio encoder alongside: an image is not a video with a sound track, so audio is absent, not an error
    extract(m, ["hog", "mfcc"], tmp_path / "c", images_are_faces=True, face_size=64, progress=False)
    hog = load_features(tmp_path / "c", "faces", "hog")
    assert hog.present.all() and all(len(s) == 1 for s in hog.sequences)  # one frame each
    assert not load_features(tmp_path / "c", "faces", "mfcc").present.any()
    # used whole: the HOG of the image itself, resized as the encoder does
    import cv2

    grey = np.asarray(Image.open(paths[0]).convert("L"))
    expected = cv2.HOGDescriptor((64, 64), (16, 16), (8, 8), (8, 8), 9).compute(
        cv2.resize(grey, (64, 64), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(hog.lookup(["f0"]).vectors[0], expected.reshape(-1), atol=1e-4)
    # without images_are_faces the cascade looks for a face; noise has none: centre square, recorded
    entry = extract(m, ["hog"], tmp_path / "d", face_size=64, progress=False)[0]
    assert sorted(entry.meta["no_face"]) == ["f0", "f1"]
