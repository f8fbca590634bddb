"""The HTTP API and its web page: one model, loaded once, behind FastAPI.

    GET  /              the page: drop a clip, see the emotion, the class probabilities, the
                        modality contributions and the face frames
    GET  /health        model name, classes, inputs, upload limit, load warnings
    POST /predict       multipart: `file` (a video, or an audio file), or `audio` and/or `image`;
                        optional `text` (the transcript). Query: frames=true adds the face crops
                        as JPEG data URLs; strict=true refuses any input with a warning.
    GET  /openapi.json  the OpenAPI description (/docs renders it)

Errors are JSON {"detail": "..."} saying what was wrong: 413 over the size limit or media longer
than the duration limit (default 60 s per modality, read from the header before decoding, and
checked again on the decoded audio; longer media are refused, never cut), 415 a content type that
is not media, 422 media the model cannot use (empty, not media, truncated, nothing the model uses)
or a malformed form, 503 when the queue is full (one prediction runs at a time; `max_queue` more
wait, default 4; a Retry-After header says when to try again), 504 when a prediction takes longer
than the request timeout (default 60 s, counted from arrival, waiting included). Every request is
independent: a bad one never stops the server.

    uvicorn --factory 'emofuse.inference.serve:app_from_env'   (EMOFUSE_MODEL=runs/demo/runs/fusion-attention)
    emofuse serve --model runs/demo/runs/fusion-attention
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from emofuse.inference.predict import ASRUnavailable, InputError, Predictor, with_transcript

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 100 * 1024 * 1024  # MER clips are a few MB; a 100 MB upload is a film, not a clip
DEFAULT_MAX_SECONDS = 60.0  # per modality; MER clips are 2-10 s
DEFAULT_TIMEOUT = 60.0  # seconds per request, waiting in the queue included
DEFAULT_MAX_QUEUE = 4  # requests waiting behind the one being predicted
# Content types a browser or curl sends for media; application/octet-stream is what they send for
# a type they do not know (.mkv, .avi on many systems), so it is accepted and FFmpeg decides.
_GENERIC = ("application/octet-stream", "binary/octet-stream", "")
_ACCEPT = {
    "file": ("video/", "audio/", "application/mp4", "application/x-matroska", "application/ogg"),
    "audio": ("audio/", "video/", "application/ogg"),
    "image": ("image/",),
}


class ModalityOut(BaseModel):
    used: bool = Field(description="whether the model saw this modality (absent ones are masked)")
    encoders: list[str] = Field(default_factory=list)
    source: str | None = None
    note: str | None = Field(None, description="why it is absent, or what was done instead")

    model_config = {"extra": "allow"}


class FrameOut(BaseModel):
    time: float = Field(description="seconds from the start of the video")
    found: bool = Field(description="a face was detected in this frame")
    box: list[int] = Field(description="x0, y0, x1, y1 of the crop in frame pixels")
    image: str | None = Field(None, description="the crop as a JPEG data URL (frames=true)")


class FacesOut(BaseModel):
    sampled: int
    found: int
    frames: list[FrameOut]


class ModelOut(BaseModel):
    name: str = Field(description="the model that answered")
    version: str | None = Field(None, description="its version, where it has one (the default model's)")
    classes: list[str]


class PredictionOut(BaseModel):
    name: str
    model: ModelOut = Field(description="which model answered")
    label: str = Field(description="the predicted emotion")
    probabilities: dict[str, float] = Field(description="probability of each class")
    weights: dict[str, float] | None = Field(
        description="per-modality (or per-candidate) weight of the fusion; null when the model gives none")
    selected: list[str] | None = Field(description="Top-N candidate encoders selected; null when the model does not select")
    modalities: dict[str, ModalityOut]
    faces: FacesOut
    warnings: list[str] = Field(description="modalities absent or replaced, and why")
    timings_ms: dict[str, float]


class HealthOut(BaseModel):
    status: str
    model: str
    architecture: str
    classes: list[str]
    inputs: dict[str, str]
    max_bytes: int
    max_seconds: float | None = Field(description="longest media per modality accepted (null: no limit)")
    timeout_s: float = Field(description="seconds a request may take, queue included")
    max_queue: int = Field(description="requests that may wait behind the running one")
    asr: str | None = Field(None, description="the speech recogniser that transcribes uploads sent without text "
                                              "(and what it does with speech that is not English); null: none")
    synthetic: bool
    warnings: list[str]


class ErrorOut(BaseModel):
    detail: str


class _TooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"upload larger than the limit of {_mb(limit)}")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"


class _BodyLimit:
    """Refuse request bodies over `max_bytes`: at once from Content-Length, else while streaming,
    before the multipart parser spools the whole upload to disk."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        # the multipart envelope (boundaries, headers, the text field) adds a few KB to the files
        limit = self.max_bytes + 64 * 1024
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            resp = JSONResponse({"detail": f"upload of {_mb(int(length))} is larger than the limit of {_mb(self.max_bytes)}"},
                                status_code=413)
            return await resp(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge(self.max_bytes)  # an HTTPException, so FastAPI answers 413
            return msg

        return await self.app(scope, counted, send)


def _safe_suffix(filename: str | None) -> str:
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def create_app(model_dir: str | Path | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES,
               predictor: Predictor | None = None, warm_up: bool = True, trust_remote_code: bool = False,
               max_seconds: float | None = DEFAULT_MAX_SECONDS, timeout: float = DEFAULT_TIMEOUT,
               max_queue: int = DEFAULT_MAX_QUEUE, asr: bool = False, asr_model: str = "whisper-base",
               asr_foreign: str = "keep") -> FastAPI:
    """The app for one model (a run directory or exported bundle), loaded here, once.
    predictor: an already loaded one (tests share it between apps with different limits).
    max_seconds: longest media per modality (None: no limit); timeout: seconds a request may take,
    queue included; max_queue: requests that may wait behind the running one (more: 503).
    asr: transcribe the speech of an upload sent without `text`, as `emofuse predict --asr` does (with
    asr_model, and asr_foreign for speech that is not English); a recogniser that is not installed
    leaves the text out, with a warning in the answer."""
    from emofuse.features.encoders.whisper import check_foreign

    try:
        check_foreign(asr_foreign)
    except ValueError as e:
        raise ValueError(f"asr_{e}") from None
    if max_queue < 0 or timeout <= 0 or (max_seconds is not None and max_seconds <= 0):
        raise ValueError(f"max_queue must be >= 0 and timeout, max_seconds > 0 (got {max_queue}, {timeout}, {max_seconds})")
    from emofuse.inference.page import page_html

    if predictor is None:
        if model_dir is None:
            raise ValueError("give model_dir or predictor")
        predictor = Predictor.load(model_dir, trust_remote_code=trust_remote_code)
    if warm_up:
        predictor.warm_up()
    spec = predictor.spec
    app = FastAPI(
        title="emofuse",
        version="1",
        description=f"Multimodal emotion recognition with the model **{spec.name}** ({spec.model}); "
                    f"classes: {', '.join(spec.labels.classes)}.",
    )
    app.state.predictor = predictor
    app.add_middleware(_BodyLimit, max_bytes=max_bytes)
    page = page_html(spec.name, list(spec.labels.classes), max_bytes, bool(spec.info.get("synthetic")))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health", response_model=HealthOut)
    def health() -> dict:
        """The model this server answers with; 200 while the server is up."""
        return {"status": "ok", "model": spec.name, "architecture": spec.model, "classes": list(spec.labels.classes),
                "inputs": {k: s.encoder for k, s in spec.inputs.items()}, "max_bytes": max_bytes,
                "max_seconds": max_seconds, "timeout_s": timeout, "max_queue": max_queue,
                "asr": f"{asr_model} (not English: {asr_foreign})" if asr else None,
                "synthetic": bool(spec.info.get("synthetic")), "warnings": predictor.bundle.warnings}

    error_responses: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorOut, "description": "upload over the size limit"},
        415: {"model": ErrorOut, "description": "a content type that is not media"},
        422: {"model": ErrorOut, "description": "media the model cannot use (the detail says why)"},
        503: {"model": ErrorOut, "description": "the queue is full; retry after the Retry-After seconds"},
        504: {"model": ErrorOut, "description": "the prediction did not finish within the request timeout"},
    }

    busy = {"n": 0}  # predictions admitted and not finished (the running one and those queued)

    @app.post("/predict", response_model=PredictionOut, responses=error_responses)
    async def predict(
        file: UploadFile | None = File(None, description="a video (mp4, mkv, avi, webm) or an audio file"),
        audio: UploadFile | None = File(None, description="an audio file (with `image`, instead of `file`)"),
        image: UploadFile | None = File(None, description="a face image (with `audio`, instead of `file`)"),
        text: str | None = Form(None, description="the transcript of the speech"),
        frames: bool = Query(False, description="add each sampled frame's face crop as a JPEG data URL"),
        strict: bool = Query(False, description="refuse (422) any input with a missing or replaced modality"),
    ) -> dict:
        """Predict the emotion of one clip."""
        from emofuse.inference.predict import Clip

        if file is None and audio is None and image is None:
            raise HTTPException(422, "send a clip as multipart field `file`, or `audio` and/or `image`")
        if file is not None and (audio is not None or image is not None):
            raise HTTPException(422, "send either `file`, or `audio` and/or `image`, not both")
        if busy["n"] > max_queue:
            raise HTTPException(503, f"the server is busy: {busy['n']} predictions running or queued (at most "
                                     f"{max_queue + 1}); retry in a few seconds", headers={"Retry-After": "5"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tmp = Path(tempfile.mkdtemp(prefix="emofuse-upload-"))
        shown: dict[str, str] = {}
        try:
            paths: dict[str, Path] = {}
            for field, up in (("file", file), ("audio", audio), ("image", image)):
                if up is None:
                    continue
                ctype = (up.content_type or "").split(";")[0].strip().lower()
                if ctype not in _GENERIC and not ctype.startswith(_ACCEPT[field]):
                    kinds = " or ".join(a.rstrip("/") + ("/*" if a.endswith("/") else "") for a in _ACCEPT[field])
                    raise HTTPException(415, f"field `{field}` ({up.filename or 'no name'}) has content type "
                                             f"{ctype!r}; expected {kinds}")
                p = tmp / f"{field}{_safe_suffix(up.filename)}"
                n = 0
                with open(p, "wb") as f:
                    while chunk := await up.read(1 << 20):
                        n += len(chunk)
                        if n > max_bytes:
                            raise HTTPException(413, f"field `{field}` is larger than the limit of {_mb(max_bytes)}")
                        f.write(chunk)
                paths[field] = p
                shown[str(p)] = f"{up.filename or field} (field `{field}`)"
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        name = Path((file or audio or image).filename or "clip").stem or "clip"
        clip = Clip(video=paths.get("file"), audio=paths.get("audio"), image=paths.get("image"), text=text, name=name)

        def work():  # in a worker thread; it owns the uploads until it ends, even after a timeout
            try:
                if asr:
                    try:
                        with_transcript(clip, predictor, asr_model, asr_foreign)
                    except ASRUnavailable as e:
                        clip.text_source = f"no transcript, and no speech recogniser: {e}"
                return predictor.predict(clip, strict=strict, max_seconds=max_seconds)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

        busy["n"] += 1
        job = loop.run_in_executor(None, work)

        def done(f) -> None:  # counted until the work ends; an abandoned job's error is read here
            busy["n"] -= 1
            if not f.cancelled():
                f.exception()

        job.add_done_callback(done)
        try:
            pred = await asyncio.wait_for(asyncio.shield(job), max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            raise HTTPException(504, f"the prediction did not finish within the request timeout of {timeout:g} s "
                                     "(the server is busy or the clip is long); retry later") from None
        except InputError as e:
            msg = str(e)
            for tmp_path, label in shown.items():  # name the upload, not our temporary file
                msg = msg.replace(tmp_path, label)
            raise HTTPException(e.status, msg) from None
        return pred.to_dict(frames=frames)

    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory`: the model from EMOFUSE_MODEL, the limit from EMOFUSE_MAX_BYTES."""
    model = os.environ.get("EMOFUSE_MODEL")
    if not model:
        raise RuntimeError("set EMOFUSE_MODEL to a run directory or exported bundle")
    return create_app(model, max_bytes=int(os.environ.get("EMOFUSE_MAX_BYTES", DEFAULT_MAX_BYTES)),
                      max_seconds=float(os.environ.get("EMOFUSE_MAX_SECONDS", DEFAULT_MAX_SECONDS)),
                      timeout=float(os.environ.get("EMOFUSE_TIMEOUT", DEFAULT_TIMEOUT)),
                      max_queue=int(os.environ.get("EMOFUSE_MAX_QUEUE", DEFAULT_MAX_QUEUE)))


def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, max_bytes: int = DEFAULT_MAX_BYTES,
          **limits) -> None:
    import uvicorn

    app = create_app(model_dir, max_bytes=max_bytes, **limits)
    uvicorn.run(app, host=host, port=port, log_level="info")


__all__ = ["create_app", "app_from_env", "serve", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_SECONDS", "DEFAULT_TIMEOUT",
           "DEFAULT_MAX_QUEUE"]
