"""`emofuse predict FOLDER` takes every container the single-clip path takes: one tiny clip of each
listed container (video + audio track, or audio alone), written here with PyAV, is listed, decoded
and predicted, and gets the very prediction the single-clip path gives it."""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emofuse.cli import app
from emofuse.inference import Clip

runner = CliRunner()

# suffix -> (muxer, [(video codec, pixel format), ...], [(audio codec, rate, layout, options), ...]):
# the first pair of codecs this PyAV build can write in that container is used.
_MJPEG = ("mjpeg", "yuvj420p")
_AAC = ("aac", 16000, "mono", {})
_MP3 = ("libmp3lame", 16000, "mono", {})
_MP2 = ("mp2", 48000, "mono", {})
_WMA = ("wmav2", 16000, "mono", {"b": "32000"})  # wmav2 refuses its default bit rate at 16 kHz
VIDEO = {
    ".mp4": ("mp4", [("libx264", "yuv420p"), ("mpeg4", "yuv420p")], [_AAC, _MP3]),
    ".mkv": ("matroska", [("mpeg4", "yuv420p"), ("libx264", "yuv420p")], [("flac", 16000, "mono", {}), _AAC]),
    ".avi": ("avi", [("mpeg4", "yuv420p"), _MJPEG], [_MP3, ("pcm_s16le", 16000, "mono", {})]),
    ".webm": ("webm", [("libvpx", "yuv420p"), ("libvpx-vp9", "yuv420p")], [("libopus", 48000, "mono", {}),
                                                                           ("opus", 48000, "stereo", {"strict": "experimental"})]),
    ".mov": ("mov", [_MJPEG, ("mpeg4", "yuv420p")], [("pcm_s16le", 16000, "mono", {}), _AAC]),
    ".m4v": ("mp4", [("mpeg4", "yuv420p"), ("libx264", "yuv420p")], [_AAC]),  # Apple's .m4v: an MP4
    ".flv": ("flv", [("flv1", "yuv420p"), ("libx264", "yuv420p")], [("libmp3lame", 22050, "mono", {}), _AAC]),
    ".mpg": ("mpeg", [("mpeg1video", "yuv420p"), ("mpeg2video", "yuv420p")], [_MP2]),
    ".mpeg": ("mpeg", [("mpeg2video", "yuv420p"), ("mpeg1video", "yuv420p")], [_MP2]),
    ".ts": ("mpegts", [("mpeg2video", "yuv420p"), ("libx264", "yuv420p")], [_MP2, _AAC]),
    ".wmv": ("asf", [("wmv2", "yuv420p"), ("msmpeg4", "yuv420p")], [_WMA]),
    ".3gp": ("3gp", [("mpeg4", "yuv420p"), ("libx264", "yuv420p")], [_AAC]),
}
AUDIO = {
    ".wav": ("wav", [("pcm_s16le", 16000, "mono", {})]),
    ".mp3": ("mp3", [_MP3, ("mp3", 16000, "mono", {})]),
    # FFmpeg's own Vorbis encoder is experimental and stereo only; libvorbis is often not built in.
    ".ogg": ("ogg", [("libvorbis", 16000, "mono", {}), ("vorbis", 16000, "stereo", {"strict": "experimental"}),
                     ("libopus", 48000, "mono", {}), ("flac", 16000, "mono", {})]),
    ".opus": ("opus", [("libopus", 48000, "mono", {}), ("opus", 48000, "stereo", {"strict": "experimental"})]),
    ".m4a": ("ipod", [_AAC]),
    ".flac": ("flac", [("flac", 16000, "mono", {})]),
    ".aac": ("adts", [_AAC]),
    ".wma": ("asf", [_WMA]),
}


def _write(path: Path, fmt: str, video: tuple[str, str] | None, audio: tuple[str, int, str, dict]) -> None:
    """One second of a 440 Hz sine (and, with `video`, 10 frames at 25 fps of 128x96 noise)."""
    import av

    codec, sr, layout, options = audio
    t = np.arange(sr) / sr
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    channels = 2 if layout == "stereo" else 1
    with av.open(str(path), mode="w", format=fmt) as out:
        vs = None
        if video is not None:
            vs = out.add_stream(video[0], rate=25)
            vs.height, vs.width, vs.pix_fmt = 96, 128, video[1]
        a = out.add_stream(codec, rate=sr, layout=layout)
        if "b" in options:
            a.bit_rate = int(options["b"])
        a.options = {k: v for k, v in options.items() if k != "b"}
        if vs is not None:
            rng = np.random.default_rng(0)
            for i in range(10):
                img = np.clip(100 + 10 * i + rng.normal(0, 20, (96, 128, 3)), 0, 255).astype(np.uint8)
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
        samples = np.repeat(wave[:, None], channels, axis=1).reshape(1, -1)  # packed (1, n * channels)
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
        for packet in a.encode(frame):
            out.mux(packet)
        for packet in a.encode(None):
            out.mux(packet)


def _write_first_that_works(path: Path, fmt: str, videos, audios) -> str | None:
    """Writes `path` with the first codec pair that works; None, else why none did."""
    tried = []
    for v in videos or [None]:
        for a in audios:
            try:
                _write(path, fmt, v, a)
                return None
            except Exception as e:  # a codec this PyAV build lacks or the muxer refuses
                tried.append(f"{v[0] + '+' if v else ''}{a[0]}: {type(e).__name__}: {e}")
                path.unlink(missing_ok=True)
    return "; ".join(tried)


@pytest.fixture(scope="module")
def container_folder(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A folder with one clip per listed container, named clip_<suffix>; suffix -> file."""
    folder = tmp_path_factory.mktemp("containers")
    made = {}
    for suffix, spec in [*VIDEO.items(), *((s, (f, None, a)) for s, (f, a) in AUDIO.items())]:
        fmt, videos, audios = spec
        path = folder / f"clip_{suffix[1:]}{suffix}"
        why = _write_first_that_works(path, fmt, videos, audios)
        if why is None:
            made[suffix] = path
        else:
            print(f"skipped {suffix}: no codec of this PyAV build could write it ({why})")
    return folder, made


def test_folder_suffix_lists_hold_every_generated_container(container_folder):
    from emofuse.inference.predict import folder_media
    from emofuse.media.suffixes import AUDIO_SUFFIXES, CLIP_SUFFIXES, VIDEO_SUFFIXES

    _, made = container_folder
    assert set(VIDEO) <= set(VIDEO_SUFFIXES) and set(AUDIO) <= set(AUDIO_SUFFIXES)
    assert set(made) <= set(CLIP_SUFFIXES) and {".flv", ".mp3", ".ogg", ".opus", ".m4a"} <= set(made)
    assert len(made) >= len(VIDEO) + len(AUDIO) - 2, f"too many containers could not be written: {sorted(made)}"
    assert folder_media(container_folder[0]) == sorted(made.values())


def test_folder_prediction_over_every_container(container_folder, predictor, fusion_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("emofuse.cli._load_predictor", lambda model, *a: predictor)
    folder, made = container_folder
    out = tmp_path / "pred.csv"
    r = runner.invoke(app, ["predict", str(folder), "--model", str(fusion_dir), "--out", str(out)])
    assert r.exit_code == 0, r.output
    n = len(made)
    assert f"{n} clips: {n} predicted, 0 failed" in " ".join(r.output.split()), r.output
    rows = list(csv.DictReader(out.open()))
    names = {suffix: p.stem for suffix, p in made.items()}
    assert [x["name"] for x in rows] == sorted(names.values())  # one row each, none skipped, in order
    by = {x["name"]: x for x in rows}
    for suffix, path in made.items():
        row = by[names[suffix]]
        assert row["error"] == "" and row["predicted"] in predictor.bundle.classes, (suffix, row)
        assert "audio treated as absent" not in row["warnings"], (suffix, row["warnings"])
        # the folder gives each clip the prediction the single-clip path gives it, from the audio
        # track it decoded (not absent, not silent) and, for a video container, its frames
        one = predictor.predict(Clip(video=path, name=path.stem))
        assert one.modalities["audio"]["used"], (suffix, one.modalities["audio"])
        if suffix in VIDEO:
            assert one.modalities["video"]["used"] and one.modalities["video"]["frames"] >= 1, suffix
        assert one.label == row["predicted"], suffix
        for c, p in one.probabilities.items():
            assert abs(p - float(row[f"p_{c}"])) < 1e-4, (suffix, c)


def test_an_audio_file_beside_its_video_is_not_a_second_clip(tmp_path):
    from emofuse.inference.predict import clips_from

    for name in ("a.mp4", "a.wav", "b.FLV", "c.opus", "d.srt", "e.txt", "f.png"):
        (tmp_path / name).write_bytes(b"")
    clips = clips_from(tmp_path)
    assert [(c.name, c.video and c.video.name, c.audio and c.audio.name) for c in clips] == [
        ("a", "a.mp4", None), ("b", "b.FLV", None), ("c", None, "c.opus")]
