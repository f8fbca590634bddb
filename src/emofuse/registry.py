"""One registry per kind (corpora, encoders, models). Unknown names fail with the valid list.

A registry finds its members itself: on its first lookup it imports every module of its package, and
each module registers what it defines (`@MODELS.register("early")`), so adding a model, a corpus or
an encoder is one new file. This module is the lowest floor of the package: it names those packages
by string and imports them only on lookup."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name no registry entry has; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name -> factory. Entries register themselves when their module is imported; every module of
    `package` (its direct modules, not sub-packages) is imported on the first lookup, so that the
    CLI's choices are always complete. Modules that register nothing are imported all the same: keep
    their top level cheap (heavy libraries imported where they are used)."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # first: a module that looks a name up while it is imported must not recurse
        try:
            pkg = importlib.import_module(self.package)
            for m in pkgutil.iter_modules(pkg.__path__):
                importlib.import_module(f"{self.package}.{m.name}")
        except BaseException:
            self._loaded = False  # the next lookup tries again, and fails as loudly
            raise

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

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


CORPORA: Registry = Registry("corpus", package="emofuse.corpora")
ENCODERS: Registry = Registry("encoder", package="emofuse.features.encoders")
MODELS: Registry = Registry("model", package="emofuse.models")
