from __future__ import annotations

import inspect

import numpy as np
import pytest

from emofuse.media import MediaError, iter_frames, video_info

from .conftest import FPS, H, N_FRAMES, W


def _levels(frames) -> list[int]:
    """Frame index recovered from the grey level each test frame was drawn with."""
    return [round(float(f.image.mean()) / 10) for f in frames]


def test_video_info(media_dir):
    info = video_info(media_dir / "clip.mp4")
    assert (info.n_frames, info.width, info.height, info.has_audio) == (N_FRAMES, W, H, True)
    assert info.fps == pytest.approx(FPS)
    assert info.duration == pytest.approx(N_FRAMES / FPS, abs=0.05)
    assert video_info(media_dir / "silent.mp4").has_audio is False
    # mkv keeps no frame count in its header: counted by demuxing
    assert video_info(media_dir / "clip.mkv").n_frames == N_FRAMES


def test_default_is_every_frame_in_order(media_dir):
    frames = list(iter_frames(media_dir / "clip.mp4"))
    assert [f.index for f in frames] == list(range(N_FRAMES))
    assert _levels(frames) == list(range(N_FRAMES))
    np.testing.assert_allclose([f.time for f in frames], np.arange(N_FRAMES) / FPS, atol=1e-6)
    assert frames[0].image.shape == (H, W, 3) and frames[0].image.dtype == np.uint8


def test_every_n(media_dir):
    frames = list(iter_frames(media_dir / "clip.mp4", every_n=5))
    assert [f.index for f in frames] == [0, 5, 10, 15, 20]
    assert _levels(frames) == [0, 5, 10, 15, 20]


def test_fps(media_dir):
    frames = list(iter_frames(media_dir / "clip.mp4", fps=3))
    assert len(frames) == 6  # 2 s at 3 fps
    np.testing.assert_allclose([f.time for f in frames], np.arange(6) / 3, atol=0.5 / FPS)
    # asking for more than the source has gives every frame once
    assert len(list(iter_frames(media_dir / "clip.mp4", fps=100))) == N_FRAMES


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv"])
def test_k_uniform(media_dir, name):
    frames = list(iter_frames(media_dir / name, k_uniform=4))
    assert [f.index for f in frames] == [3, 9, 15, 21]  # centres of four 6-frame segments
    assert _levels(frames) == [3, 9, 15, 21]
    assert len(list(iter_frames(media_dir / name, k_uniform=100))) == N_FRAMES


def test_max_side_shrinks_keeping_aspect(media_dir):
    frame = next(iter_frames(media_dir / "clip.mp4", max_side=32))
    assert frame.image.shape == (24, 32, 3)
    assert next(iter_frames(media_dir / "clip.mp4", max_side=1000)).image.shape == (H, W, 3)


def test_streams_lazily(media_dir):
    it = iter_frames(media_dir / "clip.mp4")
    assert inspect.isgenerator(it)
    assert next(it).index == 0
    it.close()  # closing early releases the container


def test_bad_sampling_arguments(media_dir):
    with pytest.raises(ValueError, match="at most one sampling mode"):
        list(iter_frames(media_dir / "clip.mp4", every_n=2, fps=3))
    with pytest.raises(ValueError, match="positive"):
        list(iter_frames(media_dir / "clip.mp4", k_uniform=0))


@pytest.mark.parametrize(
    "name, message",
    [
        ("empty.mp4", "empty file"),
        ("notes.mp4", "not a readable media file"),
        ("cut.mp4", "cut short"),
        ("cut_faststart.mp4", "truncated"),
        ("clip.wav", "no video stream"),
        ("missing.mp4", "no such file"),
    ],
)
def test_broken_files_raise_media_error(media_dir, name, message):
    with pytest.raises(MediaError, match=message) as e:
        list(iter_frames(media_dir / name))
    assert name in str(e.value)  # the message names the file
