"""Decoding frames and audio with PyAV, and face crops with OpenCV's Haar cascade.

Every media problem (missing, empty, non-media, truncated file; no video stream; no audio track)
raises `MediaError` with the file and the cause in its message."""

from emofuse.media.audio import load_audio, write_wav
from emofuse.media.errors import MediaError
from emofuse.media.faces import FaceCrop, FaceDetector, FaceTrack, crop_image_file, face_track, iter_face_crops
from emofuse.media.video import Frame, VideoInfo, iter_frames, video_info, write_video

__all__ = [
    "MediaError",
    "Frame", "VideoInfo", "iter_frames", "video_info", "write_video",
    "load_audio", "write_wav",
    "FaceCrop", "FaceDetector", "FaceTrack", "crop_image_file", "face_track", "iter_face_crops",
]
