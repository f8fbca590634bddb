"""The default model, emofuse-base, shipped in the package: `emofuse predict`, `emofuse serve` and the
page use it when no --model is given. Built by `emofuse build-model` (bench/emofuse_base.py); its
bundle.json pins the sha256 of every file, so a changed weight file is refused when it loads."""

from __future__ import annotations

from pathlib import Path

from emofuse.inference.bundle import BundleError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_MODEL = ASSETS / "emofuse-base"
MODEL_CARD = "model_card.md"


def default_model() -> Path:
    """The shipped model's folder; BundleError when this installation has none."""
    if not (DEFAULT_MODEL / "bundle.json").is_file():
        raise BundleError(f"no default model in this installation ({DEFAULT_MODEL} has no bundle.json); give a "
                          "trained model with --model, or build one with `emofuse build-model`")
    return DEFAULT_MODEL


def asr_defaults(default: bool, asr: bool | None, foreign: str | None) -> tuple[bool, str]:
    """What `predict` and `serve` transcribe when neither --asr nor --asr-foreign is given. The default model
    reads words, so speech without any is transcribed, and words heard as not English are dropped (its text
    expert reads English: such words lowered it on held-out Polish and Urdu speakers, docs/benchmarks.md).
    A --model transcribes only when asked, and keeps what it hears."""
    return (default if asr is None else asr), foreign or ("drop" if default else "keep")


def model_card(model: str | Path | None = None) -> str:
    """The model card of a bundle (the default model's when None)."""
    folder = Path(model) if model else default_model()
    card = folder / MODEL_CARD
    if not card.is_file():
        raise FileNotFoundError(f"{folder}: no {MODEL_CARD}")
    return card.read_text()
