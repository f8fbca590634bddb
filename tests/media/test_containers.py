"""The containers and codecs users' clips come in, each made here with PyAV's encoders and muxers
(2 s, 64x48, 12 fps, frames whose grey level is their index, the conftest's chirp as audio), and
decoded with every sampling mode.

What PyAV 18 can and cannot write, so what these files are:
  - flv: Sorenson H.263 (`flv1`) + mp3 + a data stream from `add_data_stream()`. FFmpeg's FLV
    muxer stores a codec-less data stream as timed text, so it reads back as a `subtitle`/`text`
    stream rather than the `data` stream of a CREMA-D file; what matters here is the same: FLV
    refuses `seek`, which is what broke `k_uniform` on real CREMA-D clips.
  - mkv: H.264 + Vorbis + a SubRip subtitle stream (subtitle packets muxed as they are).
  - the rotated phone video: a mov whose display matrix says "turn 90 degrees clockwise", as a
    phone held upright writes it; frames come out upright (see `emofuse.media.video`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from emofuse.media import MediaError, iter_frames, load_audio, video_info

from .conftest import FPS, H, N_FRAMES, SR, W, frame_image, tone

# Presentation times (ms) of the variable-frame-rate clip: bursts and gaps, 24 frames in 1.9 s, none
# within the fps mode's half-frame tolerance (41 ms) before a 1/3 s grid point.
VFR_MS = [0, 40, 80, 200, 240, 500, 540, 580, 900, 950, 1000, 1100,
          1150, 1200, 1250, 1280, 1450, 1500, 1550, 1600, 1700, 1800, 1850, 1900]  # fmt: skip
LATE_AUDIO_S = 0.5
BAND = 8  # rows of white on top of each frame of the rotated clip, to tell which way is up


@dataclass(frozen=True)
class Spec:
    fmt: str
    vcodec: str | None  # None: audio only
    acodec: str | None  # None: no audio
    sr: int = SR
    layout: str = "mono"
    pix_fmt: str = "yuv420p"
    video_options: dict = field(default_factory=dict)
    audio_options: dict = field(default_factory=dict)
    vfr: bool = False
    rotation: int | None = None  # display matrix, degrees counter-clockwise (PyAV's convention)
    audio_start: float = 0.0
    data_stream: bool = False
    subtitles: bool = False


SPECS = {
    "clip.flv": Spec("flv", "flv", "libmp3lame", sr=22050, data_stream=True),  # FLV's mp3 rates: 11/22/44 kHz
    "clip.mkv": Spec("matroska", "libx264", "vorbis", sr=44100, layout="stereo", subtitles=True,
                     audio_options={"strict": "experimental"}),  # FFmpeg's own Vorbis encoder: stereo only
    "clip.webm": Spec("webm", "libvpx", "libopus", sr=48000),
    "vp9.webm": Spec("webm", "libvpx-vp9", "libopus", sr=48000, video_options={"deadline": "realtime"}),
    # pcm: with mp3, FFmpeg's AVI muxer shifts the video by the mp3 encoder's delay, which leaves an
    # empty chunk at frame 1 (that the header counts): a property of AVI + mp3, tested nowhere here.
    "clip.avi": Spec("avi", "mpeg4", "pcm_s16le"),
    "clip.mov": Spec("mov", "mjpeg", "pcm_s16le", pix_fmt="yuvj420p"),
    "bframes.mp4": Spec("mp4", "libx264", "aac", video_options={"x264-params": "bframes=3:b-adapt=0"}),
    "vfr.mp4": Spec("mp4", "libx264", None, vfr=True),
    "phone.mov": Spec("mov", "libx264", "aac", rotation=-90),
    "late_audio.mp4": Spec("mp4", "libx264", "aac", audio_start=LATE_AUDIO_S),
    "audio_only.mp4": Spec("mp4", None, "aac"),
}  # fmt: skip
VIDEO = [name for name, s in SPECS.items() if s.vcodec]
CFR = [name for name in VIDEO if not SPECS[name].vfr]
WITH_AUDIO = [name for name, s in SPECS.items() if s.acodec]


def _image(i: int, spec: Spec) -> np.ndarray:
    image = frame_image(i)
    if spec.rotation is not None:
        image[:BAND] = 255
    return image


def make_clip(path: Path, spec: Spec) -> Path:
    """Encode and mux one test clip as `spec` says."""
    with av.open(str(path), "w", format=spec.fmt) as out:
        vs = as_ = ds = ss = None
        if spec.vcodec:
            vs = out.add_stream(spec.vcodec, rate=FPS, options=dict(spec.video_options))
            vs.width, vs.height, vs.pix_fmt = W, H, spec.pix_fmt
            vs.codec_context.thread_count = 1
            if spec.vfr:
                vs.codec_context.time_base = vs.time_base = Fraction(1, 1000)
            if spec.rotation is not None:
                vs.set_display_rotation(spec.rotation)
        if spec.acodec:
            as_ = out.add_stream(spec.acodec, rate=spec.sr, layout=spec.layout, options=dict(spec.audio_options))
        if spec.data_stream:
            ds = out.add_data_stream()
        if spec.subtitles:
            ss = out.add_mux_stream("subrip")
            ss.time_base = Fraction(1, 1000)
        if vs is not None:
            for i in range(N_FRAMES):
                frame = av.VideoFrame.from_ndarray(_image(i, spec), format="rgb24")
                if spec.vfr:
                    frame.pts, frame.time_base = VFR_MS[i], Fraction(1, 1000)
                else:
                    frame.pts = i
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
        if as_ is not None:
            n_channels = 2 if spec.layout == "stereo" else 1
            samples = np.repeat(tone(sr=spec.sr).reshape(1, -1), n_channels, axis=0)  # (channels, n)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=spec.layout)
            frame.sample_rate = spec.sr
            frame.pts, frame.time_base = round(spec.audio_start * spec.sr), Fraction(1, spec.sr)
            for packet in as_.encode(frame):
                out.mux(packet)
            for packet in as_.encode(None):
                out.mux(packet)
        for stream, items in ((ds, [(0, b"onCuePoint")]), (ss, [(0, b"hello"), (1000, b"world")])):
            if stream is None:
                continue
            for t_ms, payload in items:
                packet = av.Packet(payload)
                packet.stream, packet.time_base = stream, Fraction(1, 1000)
                packet.pts = packet.dts = t_ms
                packet.duration = 500
                out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("containers")
    return {name: make_clip(d / name, spec) for name, spec in SPECS.items()}


def _levels(frames) -> list[int]:
    """Frame index from each frame's grey level (the median ignores the rotated clip's white band)."""
    return [round(float(np.median(f.image)) / 10) for f in frames]


def _times(name: str) -> np.ndarray:
    return np.array(VFR_MS) / 1000 if SPECS[name].vfr else np.arange(N_FRAMES) / FPS


def test_the_clips_are_what_they_claim(clips):
    """Guards the fixtures: if PyAV wrote something else, the tests below would prove less."""
    kinds = {}
    for name, path in clips.items():
        with av.open(str(path)) as c:
            kinds[name] = sorted(s.type for s in c.streams)
    assert kinds["clip.flv"] == ["audio", "subtitle", "video"]  # the data stream, stored as timed text
    assert kinds["clip.mkv"] == ["audio", "subtitle", "video"]
    assert kinds["audio_only.mp4"] == ["audio"]
    with av.open(str(clips["bframes.mp4"])) as c:
        types = {int(f.pict_type) for f in c.decode(video=0)}
    assert int(av.video.frame.PictureType.B) in types
    with av.open(str(clips["late_audio.mp4"])) as c:
        a = c.streams.audio[0]
        # 0.5 s less the AAC encoder's 1024 priming samples
        assert float(a.start_time * a.time_base) > 0.4
    with av.open(str(clips["clip.flv"])) as c:  # the CREMA-D failure: FLV cannot seek back
        with pytest.raises(av.error.FFmpegError):
            c.seek(0, stream=c.streams.video[0])


@pytest.mark.parametrize("name", VIDEO)
def test_video_info(clips, name):
    info = video_info(clips[name])
    assert info.n_frames == N_FRAMES
    upright = SPECS[name].rotation is not None and SPECS[name].rotation % 180 != 0
    assert (info.width, info.height) == ((H, W) if upright else (W, H))
    assert info.has_audio == (SPECS[name].acodec is not None)
    assert info.duration == pytest.approx(_times(name)[-1] + 1 / FPS, abs=0.15)


@pytest.mark.parametrize("name", VIDEO)
def test_every_frame_in_presentation_order(clips, name):
    frames = list(iter_frames(clips[name]))
    assert [f.index for f in frames] == list(range(N_FRAMES))
    assert _levels(frames) == list(range(N_FRAMES))  # B-frames reordered, nothing dropped or doubled
    np.testing.assert_allclose([f.time for f in frames], _times(name), atol=2e-3)


@pytest.mark.parametrize("name", VIDEO)
def test_every_n(clips, name):
    frames = list(iter_frames(clips[name], every_n=5))
    assert [f.index for f in frames] == _levels(frames) == [0, 5, 10, 15, 20]
    np.testing.assert_allclose([f.time for f in frames], _times(name)[::5], atol=2e-3)


@pytest.mark.parametrize("name", CFR)
def test_fps(clips, name):
    frames = list(iter_frames(clips[name], fps=3))
    np.testing.assert_allclose([f.time for f in frames], np.arange(6) / 3, atol=0.5 / FPS)
    assert _levels(frames) == [0, 4, 8, 12, 16, 20]


def test_fps_on_variable_frame_rate(clips):
    frames = list(iter_frames(clips["vfr.mp4"], fps=3))
    # The first frame at or after each grid point 0, 1/3, 2/3, 1, 4/3, 5/3 (worked out by hand from VFR_MS):
    # the burst at 0-80 ms gives one frame, the gap to 500 ms covers 1/3, the gap to 900 ms covers 2/3.
    np.testing.assert_allclose([f.time for f in frames], [0.0, 0.5, 0.9, 1.0, 1.45, 1.7], atol=1e-3)
    assert _levels(frames) == [0, 5, 8, 10, 16, 20]


@pytest.mark.parametrize("name", VIDEO)
def test_k_uniform(clips, name):
    frames = list(iter_frames(clips[name], k_uniform=4))
    assert [f.index for f in frames] == _levels(frames) == [3, 9, 15, 21]  # centres of four 6-frame segments
    assert len(list(iter_frames(clips[name], k_uniform=100))) == N_FRAMES


def test_k_uniform_on_a_container_that_cannot_seek(clips):
    """The CREMA-D bug: FLV keeps no frame count, so k_uniform counts first; it used to seek back to
    the start for decoding, FLV refused, and every clip was rejected as 'truncated or corrupt'."""
    frames = list(iter_frames(clips["clip.flv"], k_uniform=8))
    assert [f.index for f in frames] == _levels(frames) == [1, 4, 7, 10, 13, 16, 19, 22]
    assert video_info(clips["clip.flv"]).n_frames == N_FRAMES


def test_rotated_phone_video_comes_out_upright(clips):
    """Coded 64x48 with the band on top, displayed turned 90 degrees clockwise: the frames come out
    48 wide and 64 high with the band on the right, as a player shows them."""
    frame = next(iter_frames(clips["phone.mov"]))
    assert frame.image.shape == (W, H, 3)
    band = frame.image[:, -BAND + 1 :].mean()  # one column in from the edge: codec ringing
    rest = frame.image[:, : H - BAND - 1].mean()
    assert band > 200 and rest < 50, (band, rest)
    small = next(iter_frames(clips["phone.mov"], max_side=32))
    assert small.image.shape == (32, 24, 3)


def _alignment(audio: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag, correlation) of the best placement of `ref` in `audio` among lags 0..max_lag."""
    n = min(len(ref), len(audio) - max_lag)
    scores = np.correlate(audio[: n + max_lag], ref[:n], mode="valid")  # (max_lag + 1,)
    lag = int(np.argmax(scores))
    m = min(len(ref), len(audio) - lag)
    return lag, float(np.corrcoef(audio[lag : lag + m], ref[:m])[0, 1])


@pytest.mark.parametrize("name", WITH_AUDIO)
def test_load_audio(clips, name):
    audio, ref = load_audio(clips[name], sr=SR), tone()
    assert audio.dtype == np.float32 and audio.ndim == 1
    # Codecs may lead with their priming samples (AAC 1024, mp3 ~1100 at its own rate): under 0.1 s.
    lag, r = _alignment(audio, ref, max_lag=SR // 10)
    assert r > 0.95, (lag, r)
    assert abs(len(audio) - lag - len(ref)) < 0.1 * SR


def test_audio_that_starts_late_is_not_padded(clips):
    """load_audio returns the track from its own first sample: the 0.5 s before the audio starts
    in the video is not filled with silence (sample 0 is at the audio stream's start time)."""
    audio = load_audio(clips["late_audio.mp4"], sr=SR)
    lag, r = _alignment(audio, tone(), max_lag=SR)
    assert r > 0.95
    assert lag < 0.1 * SR  # priming only, not the 0.5 s offset
    # and the video of the same file is unaffected
    assert _levels(iter_frames(clips["late_audio.mp4"], k_uniform=4)) == [3, 9, 15, 21]


def test_audio_only_mp4(clips):
    path = clips["audio_only.mp4"]
    for call in (lambda: list(iter_frames(path, k_uniform=4)), lambda: video_info(path)):
        with pytest.raises(MediaError, match="no video stream") as e:
            call()
        assert "audio_only.mp4" in str(e.value)
    assert len(load_audio(path, sr=SR)) == len(tone())
