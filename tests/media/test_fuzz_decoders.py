"""Property-based tests of the decoders: whatever bytes a user hands over (random, cut short, bit
rotted, odd sizes and sample formats), `iter_frames`, `video_info` and `load_audio` either work or
raise `MediaError` naming the file. Never another exception type, never a crash of the process.

The valid files come from the conftest (mp4, wav) and from test_containers (flv). The example
database is off: a failure prints its example, and runs do not depend on earlier ones."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from emofuse.media import MediaError, iter_frames, load_audio, video_info

from .conftest import N_FRAMES, tone
from .test_containers import SPECS, make_clip

FUZZ = settings(
    max_examples=40,
    deadline=None,  # a decode takes a few ms, sometimes a hundred; timing is not the property
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# The first bytes that make FFmpeg pick a demuxer, so random tails reach the demuxers' parsers
# rather than all failing the probe.
MAGIC = [
    b"",
    b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",  # mp4
    b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00",  # flv, audio + video
    b"RIFF\xff\xff\xff\x7fWAVEfmt ",  # wav
    b"\x1a\x45\xdf\xa3",  # matroska / webm (EBML)
    b"RIFF\xff\xff\xff\x7fAVI LIST",  # avi
    b"ID3\x04\x00\x00\x00\x00\x00\x00",  # mp3
]


@pytest.fixture(scope="module")
def valid(media_dir, tmp_path_factory) -> dict[str, bytes]:
    flv = make_clip(tmp_path_factory.mktemp("fuzz") / "clip.flv", SPECS["clip.flv"])
    return {
        "mp4": (media_dir / "clip.mp4").read_bytes(),  # moov at the end
        "faststart.mp4": (media_dir / "faststart.mp4").read_bytes(),  # moov first: cuts open, then break
        "wav": (media_dir / "clip.wav").read_bytes(),
        "flv": flv.read_bytes(),
    }


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzzed")


def _decode_all(path: Path) -> None:
    """Every entry point, each either working or refusing with a MediaError that names the file."""
    calls = [
        lambda: video_info(path),
        lambda: list(iter_frames(path, max_side=16)),
        lambda: list(iter_frames(path, k_uniform=4)),
        lambda: list(iter_frames(path, fps=5)),
        lambda: load_audio(path, sr=8000),
    ]
    for call in calls:
        try:
            result = call()
        except MediaError as e:
            assert path.name in str(e), str(e)
            continue
        if isinstance(result, np.ndarray):
            assert result.dtype == np.float32 and result.ndim == 1 and np.isfinite(result).all()


def _write(scratch: Path, name: str, data: bytes) -> Path:
    path = scratch / name
    path.write_bytes(data)
    return path


@FUZZ
@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=4096), ext=st.sampled_from(["mp4", "flv", "wav", "mkv"]))
def test_random_bytes(scratch, magic, tail, ext):
    _decode_all(_write(scratch, f"random.{ext}", magic + tail))


@FUZZ
@given(kind=st.sampled_from(["mp4", "faststart.mp4", "wav", "flv"]), fraction=st.floats(0.0, 1.0))
def test_truncated_files(valid, scratch, kind, fraction):
    data = valid[kind]
    cut = data[: int(fraction * len(data))]
    _decode_all(_write(scratch, f"cut.{kind.rsplit('.', 1)[-1]}", cut))


@FUZZ
@given(
    kind=st.sampled_from(["mp4", "faststart.mp4", "wav", "flv"]),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=20),
)
def test_flipped_bytes(valid, scratch, kind, flips):
    data = bytearray(valid[kind])
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    _decode_all(_write(scratch, f"flipped.{kind.rsplit('.', 1)[-1]}", bytes(data)))


@settings(FUZZ, max_examples=25)
@given(
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    n_frames=st.integers(1, 6),
    container=st.sampled_from([("avi", "rawvideo", "rgb24"), ("matroska", "ffv1", "bgr0")]),
)
def test_odd_frame_sizes(scratch, width, height, n_frames, container):
    """Lossless video of any size, odd and 1-pixel ones included, decodes at its own shape (matroska
    takes no raw RGB, hence FFV1 there)."""
    fmt, codec, pix_fmt = container
    assume(not (codec == "ffv1" and width == 1 and height > 1))  # the FFV1 encoder refuses those
    path = scratch / ("odd.avi" if fmt == "avi" else "odd.mkv")
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream(codec, rate=10)
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    frames = list(iter_frames(path))
    assert [f.image.shape for f in frames] == [(height, width, 3)] * n_frames
    assert [int(f.image[0, 0, 0]) for f in frames] == [20 * i for i in range(n_frames)]
    assert video_info(path).n_frames == n_frames
    k = list(iter_frames(path, k_uniform=2))
    assert len(k) == min(2, n_frames)
    small = next(iter_frames(path, max_side=8)).image
    assert max(small.shape[:2]) == min(8, max(width, height)) and min(small.shape[:2]) >= 1


@settings(FUZZ, max_examples=25)
@given(
    channels=st.integers(1, 8),
    sr=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
    n=st.integers(1, 4000),
    subtype=st.sampled_from(["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"]),
)
def test_odd_audio_encodings(scratch, channels, sr, n, subtype):
    """Any channel count, rate, sample format and length, down to one sample: mono float32 at 16 kHz
    of the right length, or a MediaError (never a crash). FFmpeg's resampler keeps back up to ~1 ms
    of its input even when flushed, so a clip of a few samples comes out empty (a MediaError) or a
    few samples short: measured, at most 16 samples at 16 kHz."""
    path = scratch / "odd.wav"
    rng = np.random.default_rng(n)
    sf.write(path, rng.uniform(-0.5, 0.5, size=(n, channels)), sr, subtype=subtype)
    try:
        audio = load_audio(path, sr=16000)
    except MediaError as e:
        assert "odd.wav" in str(e)
        return
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    assert abs(len(audio) - n * 16000 / sr) <= 32  # 2 ms: the resampler's filter delay and rounding


# Regressions: each of these escaped as another exception type in a longer fuzzing run (1,500
# random/cut/flipped files), before the decoders handled them.


def test_tags_that_are_not_utf8_do_not_make_a_file_unreadable(valid, scratch):
    data = valid["mp4"].replace(b"SoundHandler", b"SoundHandl\xdcr")  # a latin-1 handler name
    assert data != valid["mp4"]
    path = _write(scratch, "latin1_tags.mp4", data)
    assert video_info(path).n_frames == N_FRAMES  # was UnicodeDecodeError from av.open
    assert len(list(iter_frames(path, k_uniform=4))) == 4
    assert len(load_audio(path)) == len(tone())


def test_a_video_codec_ffmpeg_does_not_know(valid, scratch):
    data = valid["mp4"].replace(b"avc1", b"zzz1")  # the sample entry's codec tag
    path = _write(scratch, "unknown_codec.mp4", data)
    for call in (lambda: video_info(path), lambda: list(iter_frames(path, k_uniform=4))):
        with pytest.raises(MediaError, match="codec is unknown") as e:  # was AttributeError
            call()
        assert "unknown_codec.mp4" in str(e.value)
    assert len(load_audio(path)) == len(tone())  # the audio track is intact


def _adts(path: Path, sr: int, layout: str) -> bytes:
    with av.open(str(path), "w", format="adts") as out:
        stream = out.add_stream("aac", rate=sr, layout=layout)
        samples = np.repeat(tone(1.0, sr).reshape(1, -1), 2 if layout == "stereo" else 1, axis=0)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = sr, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path.read_bytes()


def test_audio_whose_rate_and_layout_change_mid_stream(scratch):
    """1 s of 16 kHz mono then 1 s of 44.1 kHz stereo in one ADTS stream (two files spliced), as
    broadcast recordings have: all of it comes out, at one rate, in mono."""
    data = _adts(scratch / "a.aac", 16000, "mono") + _adts(scratch / "b.aac", 44100, "stereo")
    path = _write(scratch, "spliced.aac", data)
    audio = load_audio(path, sr=16000)  # was ValueError("Frame does not match AudioResampler setup.")
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert abs(len(audio) - 2 * 16000) < 0.2 * 16000  # AAC priming and padding of each half
    second = audio[len(audio) // 2 + 2000 :]
    assert np.abs(second).max() > 0.1  # the 44.1 kHz half is there, not dropped
