"""Raw inputs -> dict batches, for models that encode the media themselves (fine-tuned text and
audio encoders, CLIP zero-shot video) rather than reading cached features.

A batch has the same frame as a feature batch (see data/dataset.py), keyed by modality:
    {"id": [str], "label": (B,) long, "target": (B, C) float,
     "text": [str], "text_context": [[str]], "text_after": [[str]], "text_mask": (B,) bool,
     "audio": (B, S) float 16 kHz, "audio_mask": (B, S) bool (valid samples),
     "video": (B, F, H, W, 3) uint8 face crops, "video_mask": (B, F) bool (valid frames),
     "video_face": (B, F) bool (a face was detected in that frame)}
Only the modalities asked for are present. Media are decoded lazily, item by item, so a split
that is never iterated (the training split of a zero-shot model) costs nothing. Face images (a
manifest whose decoding says images_are_faces: FER2013, CK+) are used whole, without a face search,
and kept in memory once decoded: an image network trained for tens of epochs reads each JPEG once,
not once per epoch (48x48 RGB: 7 KB a face, 200 MB for FER2013's 28,709).

Dialogue context: with `context = K` (and `context_after = J`), an utterance comes with the K
utterances before it (and the J after it) in its dialogue (manifest row order, which is each
corpus's own order), each as "Speaker: text", and the utterance itself gets its speaker prefix too,
so that the model can tell who says what."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from emofuse.config import RawInputConfig
from emofuse.corpora.base import Manifest

log = logging.getLogger(__name__)

RAW_MODALITIES = ("audio", "text", "video")
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class RawInput:
    """What encoders.json records for a raw input (the interface FeatureDataset.features has)."""

    encoder: str  # "raw"
    fingerprint: str  # the options that change what the model sees
    dim: int = 0
    present: None = None  # known per batch only, once the media are read
    decoding: None = None  # decoded as the model's options say, not as a cache entry recorded


def dialogue_turns(df, before: int, after: int = 0, speakers: bool = True
                   ) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(utterance texts, preceding turns, following turns) per row of a manifest frame, in its order.

    Turns come from the other rows of the same `dialogue` (row order): up to `before` earlier ones,
    oldest first, and up to `after` later ones, nearest first; rows without a dialogue have none,
    and rows without text are nobody's context. With `speakers` and any context asked for, every
    turn and the utterance itself read "Speaker: text" (when the speaker is known)."""
    texts = [str(t or "").strip() for t in df["text"].tolist()]
    if before <= 0 and after <= 0:
        return texts, [[] for _ in texts], [[] for _ in texts]
    spk = [str(s or "").strip() for s in df["speaker"].tolist()] if "speaker" in df else [""] * len(texts)
    dia = [str(d or "").strip() for d in df["dialogue"].tolist()] if "dialogue" in df else [""] * len(texts)
    said = [f"{s}: {t}" if speakers and s else t for t, s in zip(texts, spk)]
    rows: dict[str, list[int]] = {}  # dialogue -> its rows with text, in order
    for i, (t, d) in enumerate(zip(texts, dia)):
        if d and t:
            rows.setdefault(d, []).append(i)
    past, future = [[] for _ in texts], [[] for _ in texts]
    for i, d in enumerate(dia):
        if not d:
            continue
        turns = rows.get(d, [])
        k = np.searchsorted(turns, i)  # turns[:k] come before row i
        nxt = k + 1 if k < len(turns) and turns[k] == i else k
        past[i] = [said[j] for j in turns[max(0, k - before):k]] if before > 0 else []
        future[i] = [said[j] for j in turns[nxt:nxt + after]] if after > 0 else []
    return said, past, future


def dialogue_context(df, turns: int, speakers: bool = True) -> tuple[list[str], list[list[str]]]:
    """(utterance texts, preceding turns per row): dialogue_turns without the following turns."""
    texts, past, _ = dialogue_turns(df, turns, 0, speakers)
    return texts, past


class RawDataset(Dataset):
    """The raw inputs of the manifest rows given; same interface as FeatureDataset for the loop."""

    def __init__(self, ids: list[str], labels: np.ndarray, targets: np.ndarray, modalities: list[str],
                 columns: dict[str, list], options: RawInputConfig, classes: list[str],
                 images_are_faces: bool = False, memory: dict | None = None):
        self.ids = list(ids)
        self.labels = np.asarray(labels, dtype=np.int64)  # (N,), -1 when unlabelled
        self.targets = np.asarray(targets, dtype=np.float32)  # (N, C)
        self.modalities = sorted(modalities)
        self.columns = columns  # text, text_context, audio (paths), video (paths), present_<m>
        self.options = options
        self.classes = list(classes)
        text_fp = f"context={options.context}" + (f",after={options.context_after}" if options.context_after else "")
        self.images_are_faces = bool(images_are_faces)
        video_fp = f"every_n={options.every_n},size={options.face_size}" + (",faces" if images_are_faces else "")
        fp = {"text": text_fp, "audio": f"sr={SAMPLE_RATE},max_s={options.max_audio_s}", "video": video_fp}
        self.features = {m: RawInput("raw", fp[m]) for m in self.modalities}
        self._detector = None
        # decoded face images by path, shared with the subsets (train/val/test) made from this dataset
        self._memory: dict = {} if memory is None else memory

    @classmethod
    def from_manifest(cls, manifest: Manifest, features: dict[str, str | list[str]], options: RawInputConfig,
                      label_smoothing: float = 0.0) -> "RawDataset":
        bad = {m: v for m, v in features.items() if m not in RAW_MODALITIES or v != "raw"}
        if bad:
            raise ValueError(
                f"a raw-input model reads the media itself: data.features must map modalities "
                f"({', '.join(RAW_MODALITIES)}) to 'raw', e.g. {{text: raw}}; got {features}"
            )
        df = manifest.df
        labels, targets = manifest.label_indices(), manifest.soft_labels()
        if label_smoothing > 0:
            targets = targets * (1 - label_smoothing) + label_smoothing / targets.shape[1]
        cols: dict[str, list] = {}
        if "text" in features:
            cols["text"], cols["text_context"], cols["text_after"] = dialogue_turns(df, options.context,
                                                                                    options.context_after)
            cols["present_text"] = [bool(str(t or "").strip()) for t in df["text"].tolist()]
        if "audio" in features:
            # a clip's own audio file first, else the audio track of its video (as extract does)
            cols["audio"] = [str(a or v or "") for a, v in zip(df["audio"].tolist(), df["video"].tolist())]
            cols["present_audio"] = [bool(p) for p in cols["audio"]]
        if "video" in features:
            cols["video"] = [str(v or "") for v in df["video"].tolist()]
            cols["present_video"] = [bool(p) for p in cols["video"]]
        faces = bool((manifest.meta.get("decoding") or {}).get("images_are_faces", False))
        return cls(df["id"].tolist(), labels, targets, list(features), cols, options,
                   list(manifest.label_set.classes), images_are_faces=faces)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx) -> "RawDataset":
        idx = np.asarray(idx, dtype=int)
        cols = {k: [v[i] for i in idx] for k, v in self.columns.items()}
        return RawDataset([self.ids[i] for i in idx], self.labels[idx], self.targets[idx], self.modalities,
                          cols, self.options, self.classes, self.images_are_faces, self._memory)

    # The loop standardises cached features with training statistics; raw inputs are normalised by
    # each model's own processor instead.
    def fit_standardiser(self) -> dict:
        return {}

    def standardised(self, stats: dict) -> "RawDataset":
        return self

    def lengths(self) -> list[int] | None:
        """Characters of text (with its context) per row, for length-grouped training batches; None
        when the batches hold no text or grouping is off."""
        if "text" not in self.modalities or not self.options.group_by_length:
            return None
        return [len(t) + sum(len(c) for c in ctx) + sum(len(c) for c in nxt) for t, ctx, nxt in self.text_rows()]

    def text_rows(self) -> list[tuple[str, list[str], list[str]]]:
        """Each row's utterance with its preceding and its following turns."""
        after = self.columns.get("text_after") or [[] for _ in self.ids]
        return list(zip(self.columns["text"], self.columns["text_context"], after))

    def in_dims(self) -> dict[str, int]:
        return {m: 0 for m in self.modalities}  # 0: raw, the model's encoder decides the width

    def __getitem__(self, i: int) -> dict:
        item = {"id": self.ids[i], "label": int(self.labels[i]), "target": self.targets[i]}
        if "text" in self.modalities:
            item["text"] = self.columns["text"][i]
            item["text_context"] = self.columns["text_context"][i]
            item["text_after"] = self.columns["text_after"][i] if "text_after" in self.columns else []
            item["text_present"] = self.columns["present_text"][i]
        if "audio" in self.modalities:
            item["audio"], item["audio_present"] = self._audio(i)
        if "video" in self.modalities:
            item["video"], item["video_face"], item["video_present"] = self._video(i)
        return item

    def _audio(self, i: int) -> tuple[np.ndarray, bool]:
        from emofuse.media.audio import load_audio

        path = self.columns["audio"][i]
        if not self.columns["present_audio"][i]:
            return np.zeros(0, np.float32), False
        try:
            wave = load_audio(path, sr=SAMPLE_RATE)  # (S,)
        except Exception as e:  # one broken clip must not stop training: it is an absent input
            log.warning("%s: audio unreadable, treated as absent: %s", self.ids[i], e)
            return np.zeros(0, np.float32), False
        return wave[: int(self.options.max_audio_s * SAMPLE_RATE)], len(wave) > 0

    def _video(self, i: int) -> tuple[np.ndarray, np.ndarray, bool]:
        from emofuse.media.faces import FaceDetector, face_track

        s = self.options.face_size
        empty = np.zeros((0, s, s, 3), np.uint8), np.zeros(0, bool), False
        if not self.columns["present_video"][i]:
            return empty
        from emofuse.media.suffixes import IMAGE_SUFFIXES  # a still image in a video cell

        path = self.columns["video"][i]
        if self.images_are_faces and Path(path).suffix.lower() in IMAGE_SUFFIXES:
            return self._face_image(i, path)
        if self._detector is None:
            self._detector = FaceDetector()
        try:
            track = face_track(Path(self.columns["video"][i]), every_n=self.options.every_n, size=s,
                               detector=self._detector)
        except Exception as e:
            log.warning("%s: video unreadable, treated as absent: %s", self.ids[i], e)
            return empty
        return track.crops, track.found, True

    def _face_image(self, i: int, path: str) -> tuple[np.ndarray, np.ndarray, bool]:
        """A face image used whole (no face search), decoded once and then read from memory."""
        from emofuse.media.faces import crop_image_file

        got = self._memory.get(path)
        if got is None:
            s = self.options.face_size
            try:
                crop = crop_image_file(path, s, detect=False).image[None]  # (1, S, S, 3)
                got = (crop, np.ones(1, bool), True)
            except Exception as e:
                log.warning("%s: image unreadable, treated as absent: %s", self.ids[i], e)
                got = (np.zeros((0, s, s, 3), np.uint8), np.zeros(0, bool), False)
            self._memory[path] = got
        return got

    def collate(self, items: list[dict]) -> dict:
        return collate_raw(items)


def collate_raw(items: list[dict]) -> dict:
    """Stack raw items into a dict batch: texts stay strings; waveforms and frames are zero-padded
    with masks of the valid samples / frames."""
    batch: dict = {
        "id": [it["id"] for it in items],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "target": torch.from_numpy(np.stack([it["target"] for it in items])),
    }
    if "text" in items[0]:
        batch["text"] = [it["text"] for it in items]
        batch["text_context"] = [list(it["text_context"]) for it in items]
        batch["text_after"] = [list(it.get("text_after", [])) for it in items]
        batch["text_mask"] = torch.tensor([it["text_present"] for it in items], dtype=torch.bool)  # (B,)
    if "audio" in items[0]:
        n = max(1, max(len(it["audio"]) for it in items))
        wave = torch.zeros(len(items), n)  # (B, S)
        mask = torch.zeros(len(items), n, dtype=torch.bool)  # (B, S)
        for i, it in enumerate(items):
            if it["audio_present"]:
                wave[i, : len(it["audio"])] = torch.from_numpy(np.asarray(it["audio"], dtype=np.float32))
                mask[i, : len(it["audio"])] = True
        batch["audio"], batch["audio_mask"] = wave, mask
    if "video" in items[0]:
        f = max(1, max(len(it["video"]) for it in items))
        shape = next((it["video"].shape[1:] for it in items if len(it["video"])), (1, 1, 3))
        frames = torch.zeros(len(items), f, *shape, dtype=torch.uint8)  # (B, F, H, W, 3)
        mask = torch.zeros(len(items), f, dtype=torch.bool)  # (B, F)
        face = torch.zeros(len(items), f, dtype=torch.bool)  # (B, F)
        for i, it in enumerate(items):
            k = len(it["video"])
            if it["video_present"] and k:
                frames[i, :k] = torch.from_numpy(np.ascontiguousarray(it["video"]))
                mask[i, :k] = True
                face[i, :k] = torch.from_numpy(np.asarray(it["video_face"], dtype=bool))
        batch["video"], batch["video_mask"], batch["video_face"] = frames, mask, face
    return batch
