"""Streaming video decoding with PyAV: frames come out one at a time, and only the sampled ones
are converted to RGB, so a long video is never held in memory whole.

Three sampling modes, exactly one at a time:
  every_n=N    every N-th decoded frame (every_n=1, the default, keeps them all);
  fps=R        about R frames per second of video: the first frame at or after each grid point k/R;
  k_uniform=K  K frames spread evenly over the clip, one from the centre of each of K equal
               segments (the TSN-style sampling most video encoders expect); all frames when the
               clip has fewer than K.

Times are seconds from the start of the video stream (the first frame is at 0.0 for ordinary files).
Frames come out upright: a phone video's display matrix (its "rotate 90") is applied, as players do,
so a face detector sees faces the right way up.

The file is only ever read forwards; where a count is needed first (k_uniform on mkv, webm, flv) the
file is opened a second time for it, because some demuxers (flv) refuse to seek back."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from emofuse.media.errors import MediaError, open_container


@dataclass(frozen=True)
class Frame:
    time: float  # seconds from the start of the video stream
    index: int  # index of the frame among all decoded frames of the stream
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    fps: float  # average frame rate
    n_frames: int
    width: int
    height: int
    has_audio: bool
    rotation: int = 0  # degrees counter-clockwise the stored frames are turned to be shown (applied)


def video_info(path: str | Path) -> VideoInfo:
    """Stream metadata of a video. `n_frames` comes from the container header where it has one
    (mp4, mov, avi) and otherwise from one demux-only pass over the packets of a second opening of
    the file (mkv, webm, flv): nothing is seeked, since some containers (flv) refuse to. Width and
    height are those of the frames `iter_frames` gives, so upright for a rotated phone video, which
    costs decoding the first frame (the display matrix is only read there)."""
    with open_container(path) as container:
        stream = _video_stream(container, path)
        fps = _fps(stream)
        n_frames = int(stream.frames) or _count_frames(path)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = n_frames / fps if fps else 0.0
        width, height = stream.codec_context.width, stream.codec_context.height
        first = next(container.decode(stream), None)
        rotation = _quarter_turns(first) * 90 if first is not None else 0
        if rotation % 180:
            width, height = height, width
        return VideoInfo(
            duration=duration,
            fps=fps,
            n_frames=n_frames,
            width=width,
            height=height,
            has_audio=len(container.streams.audio) > 0,
            rotation=rotation,
        )


def iter_frames(
    path: str | Path,
    *,
    every_n: int | None = None,
    fps: float | None = None,
    k_uniform: int | None = None,
    max_side: int | None = None,
) -> Iterator[Frame]:
    """Decode `path` and yield the sampled frames in order (see the module docstring for the modes).

    max_side: shrink frames whose longer side exceeds it (aspect kept; never enlarges).
    Raises MediaError for a missing, empty, non-media or truncated file or one without video."""
    given = {k: v for k, v in (("every_n", every_n), ("fps", fps), ("k_uniform", k_uniform)) if v is not None}
    if len(given) > 1:
        raise ValueError(f"give at most one sampling mode (every_n, fps, k_uniform), got {sorted(given)}")
    for name, value in given.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if max_side is not None and max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    if not given:
        every_n = 1

    with open_container(path) as container:
        stream = _video_stream(container, path)
        src_fps = _fps(stream)
        expected = int(stream.frames)  # 0 when the container does not store it
        if k_uniform is not None and not expected:
            # Counted on a second opening: seeking this one back to the start after counting is
            # refused by some demuxers (flv: EPERM), which rejected every CREMA-D clip.
            expected = _count_frames(path)
        keep = _selector(every_n=every_n, fps=fps, k_uniform=k_uniform, n_frames=expected, src_fps=src_fps)
        # Decoding with the codec's own threads costs nothing in memory and roughly halves wall time.
        stream.thread_type = "AUTO"
        start = _seconds(stream.start_time, stream.time_base) or 0.0
        n = 0
        for n, frame in enumerate(container.decode(stream), start=1):
            index = n - 1
            t = float(frame.time) - start if frame.time is not None else index / (src_fps or 1.0)
            if keep(index, t):
                yield Frame(time=t, index=index, image=_to_rgb(frame, max_side))
        if n == 0:
            raise MediaError(f"{path}: the video stream has no decodable frames (empty or truncated file)")
        # mp4 headers list every frame; decoding far fewer means the data behind the header is gone.
        if expected and int(stream.frames) and n < 0.9 * expected - 1:
            raise MediaError(f"{path}: truncated, decoded {n} of the {expected} frames the header lists")


def _selector(*, every_n, fps, k_uniform, n_frames, src_fps):
    """A predicate keep(index, time) for the chosen mode, stateful where the mode needs it."""
    if every_n is not None:
        return lambda index, t: index % every_n == 0
    if k_uniform is not None:
        if n_frames <= k_uniform:
            return lambda index, t: True
        chosen = {int((i + 0.5) * n_frames / k_uniform) for i in range(k_uniform)}
        return lambda index, t: index in chosen
    # fps mode. Half a source frame of tolerance so a frame a hair before the grid point (timestamps
    # are rounded to the stream's time base) counts for it instead of the next frame.
    tol = 0.5 / src_fps if src_fps else 0.0
    next_k = 0

    def keep(index: int, t: float) -> bool:
        nonlocal next_k
        if t + tol >= next_k / fps:
            next_k = math.floor((t + tol) * fps) + 1
            return True
        return False

    return keep


def _to_rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    """The frame as (H, W, 3) uint8 RGB, upright: turned as its display matrix says (phones store
    frames as the sensor saw them and say how to turn them), as players and `ffmpeg` show them.
    Only quarter turns; the matrix's mirror flags are not applied."""
    w, h = frame.width, frame.height
    if max_side is not None and max(w, h) > max_side:
        s = max_side / max(w, h)
        # Area averaging is the alias-free way to shrink; swscale does it during the colour conversion.
        rgb = frame.reformat(
            width=max(1, round(w * s)), height=max(1, round(h * s)), format="rgb24", interpolation="AREA"
        )
    else:
        rgb = frame.reformat(format="rgb24")
    image = rgb.to_ndarray()  # (h, w, 3) uint8, as stored
    turns = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image  # np.rot90: counter-clockwise


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that make the frame upright (0-3). PyAV's `rotation` is the
    display matrix's counter-clockwise angle in [-180, 180]: -90 for a phone held upright."""
    return round(frame.rotation / 90) % 4


def _seconds(t, time_base) -> float | None:
    return float(t * time_base) if t is not None and time_base is not None else None


def _video_stream(container: av.container.InputContainer, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise MediaError(f"{path}: no video stream (streams found: {kinds})")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # a codec tag FFmpeg does not know (or a corrupt one)
        raise MediaError(f"{path}: the video stream's codec is unknown to FFmpeg, so it cannot be decoded")
    return stream


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _count_frames(path) -> int:
    """Frame count from one demux pass over a fresh opening of `path` (never a seek back: flv
    refuses it): one packet per frame for every video codec we meet, and demuxing is orders of
    magnitude cheaper than decoding."""
    with open_container(path) as container:
        stream = _video_stream(container, path)
        return sum(1 for p in container.demux(stream) if p.size > 0)  # size 0: the end-of-stream marker


def write_video(
    path: str | Path,
    frames,
    fps: float,
    *,
    audio: np.ndarray | None = None,
    sr: int = 16000,
    crf: int = 18,
) -> Path:
    """Encode RGB frames (an iterable of (H, W, 3) uint8, H and W even) as H.264/yuv420p mp4, with
    an optional mono float32 audio track (AAC). Frames are encoded as they come (not held).

    One encoder thread and no timestamps in the metadata, so the same input gives the same
    decoded output on every machine (x264's output depends on its thread count)."""
    from fractions import Fraction

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.pix_fmt = "yuv420p"  # the one pixel format every player and decoder accepts
        vs.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        vs.codec_context.thread_count = 1
        as_ = None
        if audio is not None:
            as_ = out.add_stream("aac", rate=sr, layout="mono")
            as_.bit_rate = 64000
        opened = False
        for image in frames:
            image = np.ascontiguousarray(image, dtype=np.uint8)
            if not opened:
                vs.height, vs.width = image.shape[:2]
                opened = True
            for packet in vs.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        if as_ is not None:
            samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)  # (channels=1, n)
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = sr
            frame.pts = 0
            # PyAV splits the frame into the encoder's 1024-sample chunks itself.
            for packet in as_.encode(frame):
                out.mux(packet)
            for packet in as_.encode(None):
                out.mux(packet)
    return path
