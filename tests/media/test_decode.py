"""A manifest row -> an encoder's input: the sampling option, which file a row is decoded from, and
the decoder on generated media (absent modalities, a still image, a broken file)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emofuse.media.decode import ABSENT, AUDIO_SR, Decoder, media_path, parse_sampling
from emofuse.media.errors import MediaError
from tests.media.conftest import SR


def test_video_sampling_is_checked():
    assert parse_sampling("k_uniform=8") == {"k_uniform": 8}
    assert parse_sampling({"fps": "2"}) == {"fps": 2.0}
    assert parse_sampling(None) == parse_sampling("") == {}
    with pytest.raises(ValueError, match="k_uniform"):
        parse_sampling("frames=8")
    with pytest.raises(ValueError):
        parse_sampling("fps=2,every_n=3")


def test_media_path_takes_the_audio_file_else_the_video_unless_it_is_an_image():
    assert media_path({"audio": "a.wav", "video": "v.mp4"}, "audio") == "a.wav"
    assert media_path({"audio": "", "video": "v.mp4"}, "audio") == "v.mp4"
    assert media_path({"audio": "", "video": "face.PNG"}, "audio") == ""  # a still image has no track
    assert media_path({"audio": "a.wav", "video": "face.png"}, "video") == "face.png"
    assert media_path({"id": "x", "text": "hi"}, "video") == media_path({"text": "hi"}, "text") == ""


def _decoder(modality: str, **kw) -> Decoder:
    return Decoder(modality, sampling=kw.pop("sampling", {"k_uniform": 4}), face_size=32,
                   no_face=kw.pop("no_face", "centre"), **kw)


def test_audio_from_the_file_or_the_video_track(media_dir):
    audio = _decoder("audio")
    wav = audio({"id": "a", "audio": str(media_dir / "clip.wav")})
    track = audio({"id": "b", "video": str(media_dir / "clip.mp4")})
    assert AUDIO_SR == SR and wav.dtype == np.float32 and abs(len(wav) - len(track)) < SR // 10
    assert audio({"id": "c", "video": str(media_dir / "silent.mp4")}) is ABSENT  # no audio track
    assert audio({"id": "d"}) is ABSENT
    with pytest.raises(MediaError):
        audio({"id": "e", "video": str(media_dir / "notes.mp4")})


def test_video_faces_or_centre_squares(media_dir, tmp_path):
    video = _decoder("video")
    crops = video({"id": "a", "video": str(media_dir / "clip.mp4")})  # flat grey frames: no face
    assert crops.shape == (4, 32, 32, 3) and crops.dtype == np.uint8 and video.no_face_ids == ["a"]
    assert _decoder("video", no_face="absent")({"id": "a", "video": str(media_dir / "clip.mp4")}) is ABSENT
    assert video({"id": "b", "audio": str(media_dir / "clip.wav")}) is ABSENT
    # a still image is a one-frame clip; images_are_faces uses it whole
    Image.fromarray(np.full((48, 48, 3), 90, np.uint8)).save(tmp_path / "face.png")
    assert video({"id": "c", "video": str(tmp_path / "face.png")}).shape == (1, 32, 32, 3)
    whole = _decoder("video", images_are_faces=True)({"id": "d", "video": str(tmp_path / "face.png")})
    assert whole.shape == (1, 32, 32, 3) and (whole == 90).all()


def test_text_is_stripped_or_absent():
    text = _decoder("text")
    assert text({"text": "  hello "}) == "hello" and text({"text": " "}) is ABSENT and text({}) is ABSENT
