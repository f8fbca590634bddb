"""The server's bounds on the issue-13 probe set, measured in one process (prints figures, asserts nothing).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/server_probe.py --model runs/demo/runs/fusion-attention

Uploads, through the real app (FastAPI's test client): a 30-minute 8 kbps mono mp3 (1.8 MB, made here
with PyAV), a 59-second one (under the default 60 s limit), junk bytes, an empty file, a truncated
mp4, and a normal demo clip; prints each answer's status and time and the process's peak RSS
(ru_maxrss) before and after."""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def mp3(path: Path, seconds: float, sr: int = 8000, kbps: int = 8) -> Path:
    with av.open(str(path), "w", format="mp3") as out:
        s = out.add_stream("libmp3lame", rate=sr, layout="mono")
        s.bit_rate = kbps * 1000
        rng = np.random.default_rng(0)
        block = sr  # one second at a time
        for k in range(int(seconds)):
            t = np.arange(block) / sr + k
            x = (0.2 * np.sin(2 * np.pi * (150 + 50 * np.sin(t)) * t) + 0.01 * rng.standard_normal(block)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sr, k * block, Fraction(1, sr)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KB -> GB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--clip", help="a normal clip (default: the first mp4 of the demo corpus)")
    a = ap.parse_args()
    from fastapi.testclient import TestClient

    from emofuse.inference.serve import create_app

    tmp = Path(tempfile.mkdtemp(prefix="emofuse-probe-"))
    t0 = time.perf_counter()
    long_mp3 = mp3(tmp / "long.mp3", 30 * 60)
    short_mp3 = mp3(tmp / "short.mp3", 59)
    print(f"made the probe files in {time.perf_counter() - t0:.1f} s: long.mp3 {long_mp3.stat().st_size / 1e6:.2f} MB")
    clip = Path(a.clip) if a.clip else sorted(Path(a.model).parents[1].glob("corpus/**/*.mp4"))[0]
    (tmp / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(200_000))
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "cut.mp4").write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    app = create_app(a.model)
    print(f"peak RSS after loading the model: {rss_gb():.2f} GB")
    with TestClient(app) as c:
        for name, field, ctype in (("long.mp3", "audio", "audio/mpeg"), ("short.mp3", "audio", "audio/mpeg"),
                                   ("junk.mp4", "file", "video/mp4"), ("empty.mp4", "file", "video/mp4"),
                                   ("cut.mp4", "file", "video/mp4"), (clip.name, "file", "video/mp4")):
            path = tmp / name if (tmp / name).exists() else clip
            t = time.perf_counter()
            r = c.post("/predict", files={field: (name, path.read_bytes(), ctype)}, data={"text": "I am fine."})
            detail = r.json().get("detail", r.json().get("label")) if r.headers.get("content-type", "").startswith("application/json") else ""
            print(f"{name:<12} {r.status_code}  {time.perf_counter() - t:6.2f} s  peak RSS {rss_gb():.2f} GB  {str(detail)[:90]}")
        print(f"health after the probes: {c.get('/health').status_code}")
    print(f"peak_rss_gb: {rss_gb():.2f}")


if __name__ == "__main__":
    main()
