"""extract on generated media files: audio from a wav or a video's own track, face crops from
video, absent modalities and broken files recorded per row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.features import extract, load_features
from emofuse.labels import MER6
from emofuse.media.audio import write_wav
from emofuse.media.video import write_video
from tests.conftest import need
from tests.features.test_cache import CountingEncoder


def _manifest(rows: list[dict], corpus: str = "media") -> Manifest:
    full = [{c: "" for c in MANIFEST_COLUMNS} | {"split": "train", "fold": -1, "label": "neutral"} | r for r in rows]
    return Manifest(corpus, MER6, pd.DataFrame(full, columns=MANIFEST_COLUMNS))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)  # noise: no face anywhere
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000)).astype(np.float32)  # 2 s
    return {
        "av": write_video(d / "av.mp4", frames, fps=8, audio=tone),
        "silent": write_video(d / "silent.mp4", frames, fps=8),
        "wav": write_wav(d / "speech.wav", tone[:16000]),
        "broken": _write(d / "broken.mp4", b"\x00\x01 this is not an mp4" * 20),
    }


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_extract_decodes_each_modality_and_records_failures(tmp_path, media):
    m = _manifest([
        {"id": "av", "video": str(media["av"]), "text": "hello there"},
        {"id": "wav_only", "audio": str(media["wav"])},
        {"id": "silent", "video": str(media["silent"]), "text": "no sound"},
        {"id": "broken", "video": str(media["broken"]), "text": "broken clip"},
    ])
    text = CountingEncoder()
    entries = extract(m, ["mfcc", "fer2013", text], tmp_path, video_sampling="k_uniform=4", face_size=64,
                      batch_size=2, workers=2, progress=False)
    by = {e.name: e for e in entries}
    assert all(e.complete for e in entries)

    mfcc = load_features(tmp_path, "media", "mfcc")
    fer = load_features(tmp_path, "media", "fer2013")
    txt = load_features(tmp_path, "media", "fake")
    present = {name: dict(zip(t.ids, t.present.tolist())) for name, t in (("mfcc", mfcc), ("fer", fer), ("txt", txt))}
    # audio: the video's own track, or the wav; a video without an audio track is absent audio, not an
    # error (issue 13); the broken video is an error
    assert present["mfcc"] == {"av": True, "wav_only": True, "silent": False, "broken": False}
    errors = {e["id"]: e["message"] for e in by["mfcc"].meta["errors"]}
    assert set(errors) == {"broken"} and by["mfcc"].stats["absent"] == 1
    assert mfcc.lookup(["av"]).sequences[0].shape == (1 + 32000 // 160, 40)
    assert mfcc.lookup(["wav_only"]).sequences[0].shape == (1 + 16000 // 160, 40)
    # video: 4 sampled frames; no face in noise, so the centre squares are used and the ids listed
    assert present["fer"] == {"av": True, "wav_only": False, "silent": True, "broken": False}
    assert fer.lookup(["av"]).sequences[0].shape == (4, 135)
    assert sorted(by["fer2013"].meta["no_face"]) == ["av", "silent"]
    assert [e["id"] for e in by["fer2013"].meta["errors"]] == ["broken"]
    assert by["fer2013"].stats["absent"] == 1  # wav_only has no video
    # text: absent where the row has none
    assert present["txt"] == {"av": True, "wav_only": False, "silent": True, "broken": True}
    assert not fer.lookup(["wav_only"]).vectors.any()


def test_no_face_absent_option(tmp_path, media):
    m = _manifest([{"id": "av", "video": str(media["av"])}])
    (e,) = extract(m, ["fer2013"], tmp_path, video_sampling={"k_uniform": 2}, no_face="absent", progress=False)
    assert e.meta["no_face"] == ["av"] and not load_features(tmp_path, "media", "fer2013").present[0]


@pytest.mark.realdata
def test_faces_in_a_video_reach_the_fer_cnn(tmp_path, data_root):
    """A clip made of real FER2013 happy faces (enlarged, on a grey background): the detector finds
    them and the CNN calls them happy."""
    import cv2
    from PIL import Image

    from emofuse.features.encoders.builtin import FER2013_CLASSES

    root = need(data_root, "fer2013_train")
    labels = pd.read_csv(root / "labels.csv")
    paths = labels[labels["label"] == "happy"]["path"].iloc[:6]
    frames = []
    for p in paths:
        face = cv2.resize(np.asarray(Image.open(root / p).convert("RGB")), (160, 160))
        canvas = np.full((240, 320, 3), 128, np.uint8)
        canvas[40:200, 80:240] = face
        frames += [canvas] * 2  # 12 frames
    clip = write_video(tmp_path / "happy.mp4", frames, fps=6)
    m = _manifest([{"id": "happy", "video": str(clip)}], corpus="faces")
    (e,) = extract(m, ["fer2013"], tmp_path / "cache", video_sampling="every_n=2", face_size=96, progress=False)
    assert e.meta.get("no_face", []) == []
    t = load_features(tmp_path / "cache", "faces", "fer2013")
    assert t.present[0] and t.sequences[0].shape[0] >= 3  # frames with a detected face
    assert t.vectors[0][: len(FER2013_CLASSES)].argmax() == FER2013_CLASSES.index("happy")
