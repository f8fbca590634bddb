"""One registry per kind (corpora, encoders, models). Unknown names fail with the valid list."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name no registry entry has; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name -> factory. Entries register themselves when their module is imported; the modules
    listed in `modules` are imported on first lookup so that the CLI's choices are always complete."""

    def __init__(self, kind: str, modules: Iterable[str] = ()):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._modules = tuple(modules)
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for m in self._modules:
                importlib.import_module(m)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


CORPORA: Registry = Registry(
    "corpus",
    ["emofuse.corpora.mer2025", "emofuse.corpora.meld", "emofuse.corpora.iemocap",
     "emofuse.corpora.ravdess", "emofuse.corpora.csv", "emofuse.corpora.fer2013", "emofuse.corpora.goemotions", "emofuse.corpora.ckplus",
     "emofuse.corpora.nemo", "emofuse.corpora.urdu"],
)
ENCODERS: Registry = Registry(
    "encoder", ["emofuse.features.encoders.builtin", "emofuse.features.encoders.whisper", "emofuse.features.encoders.mpnet",
                "emofuse.features.encoders.face_net"]
)
MODELS: Registry = Registry(
    "model",
    ["emofuse.models.unimodal", "emofuse.models.early", "emofuse.models.late",
     "emofuse.models.attention", "emofuse.models.mer_han", "emofuse.models.llama_topn",
     "emofuse.models.finetune_text", "emofuse.models.finetune_audio", "emofuse.models.finetune_face",
     "emofuse.models.clip_zeroshot", "emofuse.models.ensemble", "emofuse.models.experts"],
)
