"""The HTTP API with a test client on the demo model: the prediction JSON, the OpenAPI description,
and a 4xx that says what was wrong for each bad input, with the server answering after each."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

MAX_BYTES = 1_000_000  # the demo clips are ~50 KB


@pytest.fixture(scope="module")
def client(predictor):
    from emofuse.inference.serve import create_app

    app = create_app(predictor=predictor, max_bytes=MAX_BYTES, warm_up=False)
    with TestClient(app) as c:
        yield c


def _post(client, path, name=None, ctype="video/mp4", field="file", data=None, **params):
    body = data if data is not None else path.read_bytes()
    return client.post("/predict", files={field: (name or path.name, body, ctype)}, params=params)


def test_health_and_openapi(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "fusion-attention" and h["max_bytes"] == MAX_BYTES
    assert h["inputs"] == {"audio": "egemaps", "text": "minilm", "video": "fer2013"} and h["synthetic"] is True
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/predict"]["post"]
    fields = spec["components"]["schemas"][post["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]]
    assert {"file", "audio", "image", "text"} <= set(fields["properties"])
    assert {"200", "413", "415", "422"} <= set(post["responses"])
    assert "/health" in spec["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "fusion-attention" in page.text


def test_predict_a_clip(client, media):
    r = client.post("/predict", files={"file": ("clip.mp4", media["good"].read_bytes(), "video/mp4")},
                    data={"text": "I am so happy today!"}, params={"frames": "true"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["name"] == "clip" and d["label"] in d["probabilities"]
    assert abs(sum(d["probabilities"].values()) - 1) < 1e-3 and set(d["weights"]) == {"audio", "text", "video"}
    assert d["selected"] is None and d["warnings"] == []
    assert d["faces"]["sampled"] == 8 and d["faces"]["found"] >= 1
    assert d["faces"]["frames"][0]["image"].startswith("data:image/jpeg;base64,")
    assert set(d["timings_ms"]) == {"decode", "encode", "model", "total"}


def test_predict_audio_plus_image(client, media):
    r = client.post("/predict", files={"audio": ("voice.wav", media["wav"].read_bytes(), "audio/wav"),
                                       "image": ("face.png", media["image"].read_bytes(), "image/png")},
                    data={"text": "Nothing special."})
    assert r.status_code == 200, r.text
    assert r.json()["faces"]["sampled"] == 1 and r.json()["modalities"]["audio"]["used"]


BAD = [
    # (name, file, content type, status, words the message must hold)
    ("empty", "empty", "video/mp4", 422, "empty file"),
    ("not media", "notmedia", "video/mp4", 422, "not a readable media file"),
    ("truncated mp4", "truncated", "video/mp4", 422, "cut short"),
    ("wrong content type", "good", "text/plain", 415, "content type 'text/plain'"),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_saying_why(client, media, case):
    _, key, ctype, status, needle = case
    r = _post(client, media[key], ctype=ctype)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert needle in detail and "emofuse-upload" not in detail  # names the upload, not a temp file
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("kind,needle", [("noaudio", "no audio track"), ("silent", "silent"), ("noface", "no face found")])
def test_missing_modality_warns_or_refuses_in_strict_mode(client, media, kind, needle):
    r = client.post("/predict", files={"file": (f"{kind}.mp4", media[kind].read_bytes(), "video/mp4")},
                    data={"text": "What a day."})
    assert r.status_code == 200 and any(needle in w for w in r.json()["warnings"]), r.text
    r = client.post("/predict", files={"file": (f"{kind}.mp4", media[kind].read_bytes(), "video/mp4")},
                    data={"text": "What a day."}, params={"strict": "true"})
    assert r.status_code == 422 and needle in r.json()["detail"]


def test_model_that_needs_the_missing_modality_refuses(demo_dir, media):
    from emofuse.inference.serve import create_app

    with TestClient(create_app(demo_dir / "runs" / "unimodal-audio", warm_up=False)) as c:
        r = _post(c, media["noaudio"])
        assert r.status_code == 422 and "uses audio" in r.json()["detail"] and "no audio track" in r.json()["detail"]
        r = _post(c, media["silent"])
        assert r.status_code == 422 and "silent" in r.json()["detail"]


def test_oversize_and_malformed_requests(client, media):
    r = _post(client, media["good"], data=b"\0" * (MAX_BYTES + 100_000))
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = _post(client, media["good"], data=b"\0" * (MAX_BYTES + 10))  # under the envelope margin: caught per field
    assert r.status_code == 413 and "field `file` is larger" in r.json()["detail"]

    def chunked():  # no Content-Length: the limit is enforced while the body streams in
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
        for _ in range(20):
            yield b"\0" * (MAX_BYTES // 10)
        yield b"\r\n--B--\r\n"

    r = client.post("/predict", content=chunked(), headers={"content-type": "multipart/form-data; boundary=B"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = client.post("/predict")
    assert r.status_code == 422 and "multipart field `file`" in r.json()["detail"]
    r = client.post("/predict", files={"file": ("a.mp4", media["good"].read_bytes(), "video/mp4"),
                                       "image": ("b.png", media["image"].read_bytes(), "image/png")})
    assert r.status_code == 422 and "not both" in r.json()["detail"]
    r = client.post("/predict", files={"image": ("b.png", media["good"].read_bytes(), "video/mp4")})
    assert r.status_code == 415
    # and the server still answers
    assert _post(client, media["good"]).status_code == 200


def test_the_server_transcribes_uploads_without_text_when_asked(predictor, media, monkeypatch):
    """asr=True (the default model's `serve`): an upload without text is transcribed, as `predict --asr`
    does; without a recogniser the answer says so and the words drop out; text sent is read as sent."""
    from emofuse.features.encoders.whisper import Transcript
    from emofuse.inference.predict import ASRUnavailable
    from emofuse.inference.serve import create_app

    calls = []

    def fake(path, model="whisper-base", sr=16000, foreign="keep"):
        calls.append(foreign)
        if model != "whisper-base":
            raise ASRUnavailable(f"no speech recogniser installed: {model!r}")
        return Transcript("what a lovely day", "en")

    monkeypatch.setattr("emofuse.inference.predict.transcript", fake)
    with TestClient(create_app(predictor=predictor, max_bytes=MAX_BYTES, warm_up=False, asr=True,
                               asr_foreign="translate")) as c:
        assert c.get("/health").json()["asr"] == "whisper-base (not English: translate)"
        d = _post(c, media["good"], "clip.mp4").json()
        assert d["modalities"]["text"] == {"used": True, "source": "speech recognised (Whisper-base, en)", "note": None,
                                           "transcript": "what a lovely day", "encoders": ["minilm"]}
        assert calls == ["translate"]
        d = c.post("/predict", files={"file": ("clip.mp4", media["good"].read_bytes(), "video/mp4")},
                   data={"text": "Fine."}).json()
        assert d["modalities"]["text"]["source"] == "transcript" and len(calls) == 1
    with TestClient(create_app(predictor=predictor, max_bytes=MAX_BYTES, warm_up=False, asr=True,
                               asr_model="no-org/none")) as c:
        d = _post(c, media["good"], "clip.mp4").json()
        assert not d["modalities"]["text"]["used"] and any("no speech recogniser" in w for w in d["warnings"])
    with TestClient(create_app(predictor=predictor, max_bytes=MAX_BYTES, warm_up=False)) as c:  # off by default
        assert c.get("/health").json()["asr"] is None
        assert not _post(c, media["good"], "clip.mp4").json()["modalities"]["text"]["used"] and len(calls) == 2
    with pytest.raises(ValueError, match="asr_foreign must be one of"):
        create_app(predictor=predictor, max_bytes=MAX_BYTES, warm_up=False, asr_foreign="guess")
