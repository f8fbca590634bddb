"""Decoding frames and audio with PyAV, and face crops with OpenCV's Haar cascade.

Every media problem (missing, empty, non-media, truncated file; no video stream; no audio track)
raises `MediaError` with the file and the cause in its message.

  suffixes.py  which file suffixes are images, videos, audio
  decode.py    a manifest row -> an encoder's input (the rule extraction and the cache share)
  video.py, audio.py, faces.py  the decoders themselves; errors.py  MediaError

The names below load their module on first use, so that importing a light module of this package
(suffixes, decode) does not import PyAV and OpenCV."""

from __future__ import annotations

import importlib

_LAZY = {
    "MediaError": "emofuse.media.errors",
    **dict.fromkeys(("Frame", "VideoInfo", "iter_frames", "video_info", "write_video"), "emofuse.media.video"),
    **dict.fromkeys(("load_audio", "write_wav"), "emofuse.media.audio"),
    **dict.fromkeys(("FaceCrop", "FaceDetector", "FaceTrack", "crop_image_file", "face_track", "iter_face_crops"),
                    "emofuse.media.faces"),
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emofuse.media' has no attribute {name!r}")
