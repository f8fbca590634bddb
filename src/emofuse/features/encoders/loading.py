"""Where a Hugging Face model's files are, what they are, and loading them: the folder of a hub id
or a local path, a digest of its weights and the hub revision it holds (what encoder fingerprints
are made of), the device "auto" means, and `from_pretrained` without transformers' chatter.
Shared by every encoder that reads a Hugging Face folder (hf, whisper)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Small files that change what the model computes (architecture, tokenizer, preprocessing) are hashed whole.
_SMALL_FILE_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".py")
_IGNORED_FILES = {"generation_config.json", "training_args.bin", "README.md", ".gitattributes"}
_SAMPLE = 1 << 20  # bytes read at each end of a weight file
_N_PROBES, _PROBE = 8, 1 << 16  # plus 8 evenly spaced 64 KiB probes in between
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def file_digest(path: Path) -> str:
    """sha256 of a file. Weight files: the hub blob name when the file is a link into the HF cache
    (the blob of an LFS file is named by the sha256 of its content, so that is exact and free);
    otherwise name + size + first and last MiB + 8 probes in between (cheap for multi-GB files; a
    fine-tune changes every tensor, so the probes catch it, a one-byte edit mid-file may escape)."""
    real = path.resolve()
    if real != path.absolute() and real.parent.name == "blobs" and _HEX64.match(real.name):
        return real.name
    size = real.stat().st_size
    h = hashlib.sha256(f"{path.name}:{size}".encode())
    with open(real, "rb") as f:
        if size <= 2 * _SAMPLE + _N_PROBES * _PROBE:
            h.update(f.read())
        else:
            h.update(f.read(_SAMPLE))
            for i in range(1, _N_PROBES + 1):
                f.seek(i * size // (_N_PROBES + 1))
                h.update(f.read(_PROBE))
            f.seek(size - _SAMPLE)
            h.update(f.read(_SAMPLE))
    return h.hexdigest()


def weight_files(folder: Path) -> list[Path]:
    """The files `from_pretrained` would load: top-level safetensors when there are any, else .bin/.pt."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in _IGNORED_FILES)
    st = [p for p in files if p.suffix == ".safetensors"]
    return st or [p for p in files if p.suffix in WEIGHT_SUFFIXES]


def folder_digest(folder: Path) -> str:
    """One digest over the weight files and the small files that shape the output (config, tokenizer,
    preprocessor); independent of where the folder lives."""
    parts = {p.name: file_digest(p) for p in weight_files(folder)}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix in _SMALL_FILE_SUFFIXES and p.name not in _IGNORED_FILES:
            parts[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def folder_revision(folder: Path) -> str:
    """The hub commit a folder holds: a snapshot of the HF cache is named by it; a folder made with
    `hf download --local-dir` records it in .cache/huggingface/download/*.metadata. '' if unknown."""
    if folder.parent.name == "snapshots" and _HEX40.match(folder.name):
        return folder.name
    meta_dir = folder / ".cache" / "huggingface" / "download"
    if meta_dir.is_dir():
        for m in sorted(meta_dir.glob("*.metadata")):
            first = m.read_text(errors="replace").split("\n", 1)[0].strip()
            if _HEX40.match(first):
                return first
    return ""


def hub_name(folder: Path) -> str | None:
    """'org/name' for a snapshot folder of the HF cache (…/models--org--name/snapshots/<commit>)."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name[len("models--"):].replace("--", "/")
    return None


def resolve_folder(source: str, revision: str | None = None) -> Path:
    """A local folder for `source`: the folder itself, or the HF-cache snapshot of a hub id
    (downloaded when the hub can be reached and HF_HUB_OFFLINE is unset)."""
    p = Path(source).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p}: not a Hugging Face model folder (no config.json)")
        return p.resolve()
    if source.startswith((".", "/", "~")) or source.count("/") > 1:  # a hub id is 'name' or 'org/name'
        raise FileNotFoundError(f"model folder not found: {source}")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.py"]
    try:
        # Safetensors first: many repos also carry .bin/.h5/.msgpack copies we must not download.
        folder = Path(snapshot_download(source, revision=revision, allow_patterns=[*patterns, "*.safetensors"]))
        if not weight_files(folder):
            folder = Path(snapshot_download(source, revision=revision, allow_patterns=[*patterns, "*.bin"]))
    except Exception as e:  # offline with nothing cached, unknown repo, no network
        raise FileNotFoundError(
            f"cannot resolve Hugging Face model {source!r}: not a local folder, and the hub gave: {e}"
        ) from e
    return folder


def pick_device(device: str) -> str:
    """The device to run on: for "auto", "cuda" when a GPU is present, else "cpu"; any other as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def quiet_load(cls, folder: Path, **kw):
    """from_pretrained without transformers' progress bar and load report (we log what matters)."""
    from transformers.utils import logging as tf_logging

    bar, level = tf_logging.is_progress_bar_enabled(), tf_logging.get_verbosity()
    tf_logging.disable_progress_bar()
    tf_logging.set_verbosity_error()
    try:
        model, info = cls.from_pretrained(folder, output_loading_info=True, **kw)
    finally:
        tf_logging.set_verbosity(level)
        if bar:
            tf_logging.enable_progress_bar()
    return model, info
