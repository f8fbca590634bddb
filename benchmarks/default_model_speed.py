"""The default model's speed on one clip, as `emofuse predict clip.mp4` runs it: a 10-second 720p H.264
clip with voice (RAVDESS speech joined to 10 s, a FER2013 face enlarged in the middle of every frame),
the transcript from Whisper-base (--asr, on by default for the default model), one CPU process.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/default_model_speed.py [--data ../shared/data] [--repeat 3]

Prints the first call's cost apart (loading every encoder, and converting Whisper's weights when the
emofuse cache has none: run with EMOFUSE_CACHE pointing at an empty folder to see it), then each
prediction's wall time with the models loaded, and the process's peak RSS."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def make_clip(path: Path, data: Path, seconds: int = 10, fps: int = 25, sr: int = 48000) -> Path:
    import av
    from PIL import Image

    from emofuse.media.audio import load_audio

    clips = sorted((data / "ravdess_speech").rglob("*.wav"))[:8]
    voice = np.concatenate([load_audio(c, sr=sr) for c in clips])[: seconds * sr]
    voice = np.pad(voice, (0, seconds * sr - len(voice))).astype(np.float32)
    face = next((data / "fer2013_train").rglob("*.jpg"))
    big = np.asarray(Image.open(face).convert("RGB").resize((360, 360), Image.BILINEAR))
    frame = np.full((720, 1280, 3), 96, np.uint8)
    frame[180:540, 460:820] = big
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 1280, 720, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "28"}
        aus = out.add_stream("aac", rate=sr, layout="mono")
        for _ in range(seconds * fps):
            for p in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for s in range(seconds):
            f = av.AudioFrame.from_ndarray(voice[None, s * sr:(s + 1) * sr], format="flt", layout="mono")
            f.sample_rate, f.pts, f.time_base = sr, s * sr, Fraction(1, sr)
            for p in aus.encode(f):
                out.mux(p)
        for stream in (vs, aus):
            for p in stream.encode(None):
                out.mux(p)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("EMOFUSE_DATA", "../shared/data"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "ravdess_speech").is_dir() or not (data / "fer2013_train").is_dir():
        print(f"skipped: {data} has no ravdess_speech/ and fer2013_train/ (set EMOFUSE_DATA)")
        sys.exit(0)
    from emofuse.inference.default import default_model
    from emofuse.inference.predict import Clip, Predictor, transcribe

    clip = make_clip(Path(tempfile.mkdtemp()) / "clip10s.mp4", data)
    t = time.perf_counter()
    p = Predictor.load(default_model())
    p.warm_up()
    transcribe(clip, "whisper-base")  # loads (and, with an empty cache, converts) the recogniser
    first = time.perf_counter() - t
    print(f"first call (load every encoder and the recogniser, one transcription): {first:.1f} s "
          f"(EMOFUSE_CACHE={os.environ.get('EMOFUSE_CACHE', '~/.cache/emofuse')})")
    for i in range(args.repeat):
        t0 = time.perf_counter()
        text = transcribe(clip, "whisper-base")
        t1 = time.perf_counter()
        pred = p.predict(Clip(video=clip, text=text))
        t2 = time.perf_counter()
        print(f"prediction {i + 1}: {t2 - t0:.2f} s wall (transcription {t1 - t0:.2f} s, decode+encode+model "
              f"{t2 - t1:.2f} s: {pred.timings_ms}); {pred.label}; used {[m for m, v in pred.modalities.items() if v.get('used')]}; "
              f"words: {text[:60]!r}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"peak RSS: {rss:.2f} GB")


if __name__ == "__main__":
    main()
