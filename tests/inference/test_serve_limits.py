"""Bounded server work: media longer than the duration limit get 413 before decoding, a full queue
503, a prediction past the request timeout 504, and the server answers normally afterwards."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx2 as httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient


def _wav(path, seconds: float, sr: int = 16000):
    from emofuse.media.audio import write_wav

    t = np.arange(int(seconds * sr)) / sr
    return write_wav(path, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), sr)


class Gated:
    """The real predictor, behind a gate the test opens (one prediction at a time, as the real one)."""

    def __init__(self, real, gate: threading.Event | None = None, delay: float = 0.0):
        self.real, self.spec, self.bundle = real, real.spec, real.bundle
        self.gate, self.delay, self.started = gate, delay, threading.Event()

    def predict(self, clip, **kw):
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay)
        return self.real.predict(clip, **kw)


def test_media_longer_than_the_limit_is_refused_with_413(predictor, tmp_path, media):
    from emofuse.inference.serve import create_app

    long, short = _wav(tmp_path / "long.wav", 4.0), _wav(tmp_path / "short.wav", 1.5)
    with TestClient(create_app(predictor=predictor, warm_up=False, max_seconds=3.0)) as c:
        r = c.post("/predict", files={"audio": ("long.wav", long.read_bytes(), "audio/wav")}, data={"text": "hi"})
        assert r.status_code == 413 and "4.0 s is longer than the limit of 3 s" in r.json()["detail"]
        assert "long.wav" in r.json()["detail"] and "emofuse-upload" not in r.json()["detail"]
        r = c.post("/predict", files={"audio": ("short.wav", short.read_bytes(), "audio/wav")}, data={"text": "hi"})
        assert r.status_code == 200, r.text
        assert c.get("/health").json()["max_seconds"] == 3.0
    with TestClient(create_app(predictor=predictor, warm_up=False, max_seconds=None)) as c:  # no limit
        r = c.post("/predict", files={"audio": ("long.wav", long.read_bytes(), "audio/wav")}, data={"text": "hi"})
        assert r.status_code == 200, r.text


def test_a_full_queue_answers_503_and_then_serves_again(predictor, media):
    from emofuse.inference.serve import create_app

    gate = threading.Event()
    slow = Gated(predictor, gate)
    app = create_app(predictor=slow, warm_up=False, max_queue=1, timeout=30)
    body = media["good"].read_bytes()

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            post = lambda: c.post("/predict", files={"file": ("a.mp4", body, "video/mp4")}, data={"text": "hi"})  # noqa: E731
            first = asyncio.create_task(post())
            while not slow.started.is_set():  # the first one holds the predictor
                await asyncio.sleep(0.01)
            second = asyncio.create_task(post())  # queued (max_queue 1)
            await asyncio.sleep(0.2)
            third = await post()  # one running + one waiting: full
            gate.set()
            return third, await first, await second, await post()

    third, first, second, after = asyncio.run(scenario())
    assert third.status_code == 503 and "busy" in third.json()["detail"] and third.headers["retry-after"] == "5"
    assert first.status_code == second.status_code == after.status_code == 200


def test_a_prediction_past_the_timeout_gets_504(predictor, media):
    from emofuse.inference.serve import create_app

    slow = Gated(predictor, delay=1.5)
    with TestClient(create_app(predictor=slow, warm_up=False, timeout=0.5)) as c:
        r = c.post("/predict", files={"file": ("a.mp4", media["good"].read_bytes(), "video/mp4")}, data={"text": "hi"})
        assert r.status_code == 504 and "timeout of 0.5 s" in r.json()["detail"]
        time.sleep(1.6)  # the abandoned prediction ends; the server answers again
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize("kw", [{"max_queue": -1}, {"timeout": 0}, {"max_seconds": 0}])
def test_bad_limits_are_refused(predictor, kw):
    from emofuse.inference.serve import create_app

    with pytest.raises(ValueError):
        create_app(predictor=predictor, warm_up=False, **kw)
