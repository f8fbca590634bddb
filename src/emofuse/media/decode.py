"""A manifest row -> what an encoder of one modality reads: the text, a 16 kHz waveform, or face
crops of sampled frames. Feature extraction decodes training rows with it; the feature cache keys a
row by the file `media_path` names, so the two always agree on which file a row's features come
from.

Where each modality comes from:
  text   the row's text, stripped;
  audio  the row's audio file, else the audio track of its video (a still image has none);
  video  the row's video cell: a clip (face crops of its sampled frames) or a still image (a
         one-frame clip).
A row without the modality (no text, no audio file and a video without an audio track, a clip with
sound only) decodes to ABSENT; a broken file raises (MediaError, or ValueError for a wave with no
samples)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from emofuse.media.suffixes import IMAGE_SUFFIXES

AUDIO_SR = 16000  # Hz: what every audio encoder here reads
ABSENT = object()  # a decoded row without this modality


def parse_sampling(spec: str | dict | None) -> dict[str, Any]:
    """'k_uniform=8' | 'fps=2' | 'every_n=5' | {'k_uniform': 8} -> keyword arguments of face_track."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, dict):
        items = dict(spec)
    else:
        items = {}
        for part in str(spec).split(","):
            k, eq, v = part.partition("=")
            if not eq:
                raise ValueError(f"video_sampling {spec!r}: expected key=value, e.g. k_uniform=8")
            items[k.strip()] = v.strip()
    valid = {"k_uniform": int, "every_n": int, "fps": float}
    unknown = sorted(set(items) - set(valid))
    if unknown or len(items) > 1:
        raise ValueError(f"video_sampling {spec!r}: give one of {', '.join(valid)} (e.g. k_uniform=8)")
    return {k: valid[k](v) for k, v in items.items()}


def media_path(row: dict, modality: str) -> str:
    """The file a manifest row's `modality` is decoded from ('' when it has none; text has none):
    audio, the row's audio file, else its video (whose track may still turn out missing), unless
    that is a still image; video, the video cell."""
    video = str(row.get("video") or "")
    if modality == "audio":
        return str(row.get("audio") or "") or (video if Path(video).suffix.lower() not in IMAGE_SUFFIXES else "")
    return video if modality == "video" else ""


class Decoder:
    """row -> encoder input of one modality, or ABSENT. Raises on a broken file (the caller catches
    it per row). Thread-safe: rows may be decoded in several threads at once.

    sampling: keyword arguments of face_track (parse_sampling); face_size: side of the crops;
    no_face: 'centre' (a clip where no sampled frame shows a face gives its centre squares) |
    'absent'; images_are_faces: a still image is already a face crop, used whole. The ids of rows
    where no face was found collect in `no_face_ids`."""

    def __init__(self, modality: str, *, sampling: dict, face_size: int, no_face: str, images_are_faces: bool = False):
        self.modality = modality
        self.sampling = sampling
        self.face_size = face_size
        self.no_face = no_face
        self.images_are_faces = images_are_faces
        self.no_face_ids: list[str] = []
        self._local = threading.local()
        # Imported here, not per row, so a missing media module stops the run at once.
        if modality == "audio":
            from emofuse.media.audio import load_audio

            self._load_audio = load_audio
        elif modality == "video":
            from emofuse.media.faces import FaceDetector, crop_image_file, face_track

            self._face_track, self._detector_cls, self._crop_image = face_track, FaceDetector, crop_image_file

    def __call__(self, row: dict) -> Any:
        if self.modality == "text":
            text = str(row.get("text") or "").strip()
            return text if text else ABSENT
        path = media_path(row, self.modality)
        if self.modality == "audio":
            if not path or (not row.get("audio") and not _has_stream(path, "audio")):
                return ABSENT  # no audio file, or a video without an audio track: absent, not an error
            wave = self._load_audio(path, sr=AUDIO_SR)  # (n_samples,) float32; 16 kHz PCM wavs via libsndfile
            if len(wave) == 0:
                raise ValueError(f"{path}: no audio samples")
            return wave
        if not path:
            return ABSENT
        image = Path(path).suffix.lower() in IMAGE_SUFFIXES
        if not image and not _has_stream(path, "video"):
            return ABSENT  # a clip with sound only: no video track, so video is absent, not an error
        if image:  # a still image is a one-frame clip
            if self.images_are_faces:  # already a face crop (FER2013): the whole image, no cascade
                return self._crop_image(path, self.face_size, detect=False).image[None]  # (1, S, S, 3)
            crop = self._crop_image(path, self.face_size, detector=self._detector())
            crops, found = crop.image[None], np.array([crop.found])
        else:
            track = self._face_track(path, size=self.face_size, detector=self._detector(), **self.sampling)
            crops, found = track.crops, track.found
        if found.any():
            return crops[found]  # (F_found, S, S, 3)
        self.no_face_ids.append(str(row["id"]))
        if self.no_face == "absent":
            return ABSENT
        # Emotion corpora film one speaker close up, so the centre square mostly holds the face.
        return crops  # (F, S, S, 3) centre squares

    def _detector(self):
        detector = getattr(self._local, "detector", None)
        if detector is None:  # one per thread: OpenCV's cascade is not documented as thread-safe
            detector = self._local.detector = self._detector_cls()
        return detector


def _has_stream(path: str, kind: str) -> bool:
    """Whether a media file has a stream of `kind` ("audio" / "video"); a file that cannot be
    opened raises MediaError."""
    from emofuse.media.errors import open_container

    with open_container(path) as container:
        return any(s.type == kind for s in container.streams)
