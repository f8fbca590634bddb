"""The one encoder interface every feature extractor implements."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

Modality = Literal["video", "audio", "text"]
MODALITIES: tuple[str, ...] = ("audio", "text", "video")


@dataclass
class Encoded:
    """One utterance's features."""

    vector: np.ndarray  # (dim,) float32 utterance vector
    sequence: np.ndarray | None = None  # (T, dim) float32 frame/token sequence, when the encoder gives one


class Encoder(ABC):
    """name, modality, output dim, a fingerprint of config + weights, and `encode`.

    Inputs per modality (already decoded by features.extract):
      text  -> str
      audio -> np.ndarray float32 (n_samples,), 16 kHz mono
      video -> np.ndarray uint8 (F, H, W, 3) RGB face crops of one clip (F >= 1)
    """

    name: str
    modality: ClassVar[Modality] | Modality
    dim: int
    gives_sequence: bool = False

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything that changes the output: ids, revisions, layers, pooling, sample rates."""

    def weights_digest(self) -> str:
        """A digest of the weights (file hashes or a parameter checksum); '' when there are none."""
        return ""

    def fingerprint(self) -> str:
        payload = json.dumps({"config": self.config(), "weights": self.weights_digest()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    @abstractmethod
    def encode(self, items: list) -> list[Encoded | None]:
        """Encode a batch of utterances; one Encoded per item, in order. None for an item the encoder
        finds nothing to describe in (a clip shorter than its first frame): stored as absent, not as
        an error."""

    def submit(self, items: list) -> Callable[[], list[Encoded]]:
        """Start encoding one batch, as one pass; returns a function that waits for it and gives
        what encode(items) gives. An encoder on a GPU starts the pass and returns before it is done,
        so that its caller prepares the next batch meanwhile (features.extract keeps one batch in
        flight). This default encodes at once."""
        out = self.encode(items)
        return lambda: out

    def to(self, device: str) -> "Encoder":
        """Run on `device` ('cpu', 'cuda:1'); an encoder without a device choice ignores it. Called
        before the fingerprint is taken: a device may change the precision, which is part of it."""
        return self
