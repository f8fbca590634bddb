"""Small media files written on the fly: a clip whose frames encode their own index, its audio,
and broken variants of it."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from emofuse.media import write_video, write_wav

FPS = 12
N_FRAMES = 24  # 2 s
SR = 16000
W, H = 64, 48


def frame_image(i: int) -> np.ndarray:
    """(H, W, 3) frame whose grey level says its index, so decode order and selection are checkable."""
    return np.full((H, W, 3), 10 * i, dtype=np.uint8)


def tone(seconds: float = N_FRAMES / FPS, sr: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    # An amplitude-modulated chirp: no two stretches alike, so an offset would show in a correlation.
    chirp = np.sin(2 * np.pi * (200 * t + 150 * t**2))
    return (0.4 * chirp * (0.6 + 0.4 * np.sin(2 * np.pi * 1.7 * t))).astype(np.float32)


def remux(src: Path, dst: Path, *, fmt: str | None = None, options: dict | None = None) -> Path:
    """Copy the streams of `src` into another container without re-encoding."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt, options=options or {}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for packet in i.demux():
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = streams[packet.stream.index]
            o.mux(packet)
    return dst


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    audio = tone()
    write_video(d / "clip.mp4", (frame_image(i) for i in range(N_FRAMES)), FPS, audio=audio, sr=SR)
    write_wav(d / "clip.wav", audio, SR)
    write_video(d / "silent.mp4", (frame_image(i) for i in range(N_FRAMES)), FPS)
    remux(d / "clip.mp4", d / "clip.mkv", fmt="matroska")
    # moov atom first, so a cut file still opens and the truncation shows while decoding.
    remux(d / "clip.mp4", d / "faststart.mp4", fmt="mp4", options={"movflags": "faststart"})
    data = (d / "faststart.mp4").read_bytes()
    (d / "cut_faststart.mp4").write_bytes(data[: len(data) // 2])
    data = (d / "clip.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])  # moov atom (at the end) lost
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("these are meeting notes, not a video\n" * 20)
    return d
