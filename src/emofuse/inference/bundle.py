"""A trained model as a self-contained bundle: everything inference needs, loaded without unpickling.

Two layouts load the same way:

    a run directory (what `emofuse train` / `emofuse demo` write)
        config.yaml  labels.json  encoders.json  versions.json  metrics.json
        model.safetensors  standardiser.safetensors     (or per unit: fold*/seed*/ sub-folders)
    an exported folder (`emofuse export RUN --out DIR`, `export_bundle`)
        bundle.json                   model name and params, label set, inputs (encoder spec,
                                      fingerprint, dim, sequence), decoding, file hashes, metrics
        model.safetensors             fusion / classifier weights
        standardiser.safetensors      per-input mean and std fitted on the training split
        config.yaml  versions.json    copied for the record

Only JSON, YAML (safe_load) and safetensors are read: nothing is unpickled, and an encoder spec
that asks for `trust_remote_code` (which would import Python files from a model folder) is refused
unless the user passes `trust_remote_code=True` (`--trust-remote-code`) themselves, so a bundle from
someone else cannot run code on load. An exported bundle's `digest` covers bundle.json's own content
(model, labels, inputs, decoding, file hashes) and its `files` cover the weights, standardiser,
config and versions; any mismatch refuses to load. (An integrity check against damage and naive
edits, not a signature: it does not say who wrote the bundle.) The encoders are not in the bundle (they are pretrained
models of their own, often large); it names each by spec and fingerprint, and loading builds them
on this machine, failing with one message that names every encoder it cannot build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emofuse.labels import LabelSet

log = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "emofuse-bundle"
BUNDLE_VERSION = 2  # 2: bundle.json carries a digest of its own content
WEIGHTS = "model.safetensors"
STANDARDISER = "standardiser.safetensors"
RAW = "raw"  # an input's encoder when the model reads the decoded media itself (data/raw.py)


class BundleError(ValueError):
    """A folder that is not a usable bundle; the message names the file and what is wrong."""


class MissingEncodersError(BundleError):
    """The bundle's encoders that cannot be built on this machine (not installed, no weights)."""

    def __init__(self, missing: dict[str, str]):
        self.missing = dict(missing)  # encoder spec -> why it cannot be built
        lines = "\n  ".join(f"{spec}: {why}" for spec, why in self.missing.items())
        super().__init__(
            f"this model needs {len(self.missing)} encoder(s) that are not available on this machine "
            f"({', '.join(self.missing)}):\n  {lines}\n"
            "install them (see `emofuse list encoders`) or put their weights where the spec points"
        )


@dataclass(frozen=True)
class InputSpec:
    """One model input: key ('audio', or 'audio:egemaps' for a Top-N candidate) and its encoder."""

    key: str
    encoder: str  # spec string, as build_encoder takes it
    fingerprint: str  # the encoder's fingerprint when the features were extracted
    dim: int
    sequence: bool = False  # frame/token sequence instead of the utterance vector

    @property
    def modality(self) -> str:
        return self.key.split(":")[0]


@dataclass(frozen=True)
class Decoding:
    """How clips were decoded for the encoders; inference must decode the same way.
    The defaults are `emofuse.features.extract.extract`'s, which run directories were made with."""

    audio_sr: int = 16000
    video_sampling: str = "k_uniform=8"
    face_size: int = 224
    no_face: str = "centre"  # 'centre': centre squares where no face is found; 'absent': mask the video


@dataclass
class BundleSpec:
    """What a bundle says, before anything heavy is loaded."""

    path: Path
    name: str
    model: str  # registered model name
    params: dict[str, Any]
    labels: LabelSet
    inputs: dict[str, InputSpec]
    decoding: Decoding = field(default_factory=Decoding)
    weights: Path | None = None
    standardiser: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)  # metrics, versions, synthetic, source, unit

    @property
    def modalities(self) -> list[str]:
        return sorted({s.modality for s in self.inputs.values()})

    def to_json(self, hashes: dict[str, str]) -> dict:
        return {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "name": self.name,
            "model": {"name": self.model, "params": self.params},
            "labels": self.labels.to_dict(),
            "inputs": {k: {"encoder": s.encoder, "fingerprint": s.fingerprint, "dim": s.dim, "sequence": s.sequence}
                       for k, s in self.inputs.items()},
            "decoding": asdict(self.decoding),
            "files": hashes,
            "info": self.info,
        }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest(d: dict) -> str:
    """sha256 of bundle.json's content without its own `digest` entry, in canonical JSON."""
    body = {k: v for k, v in d.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def remote_code_specs(spec: "BundleSpec") -> list[str]:
    """The encoder specs of a bundle that ask for trust_remote_code (Python files run on load)."""
    from emofuse.features.encoders.hf import parse_spec

    found = []
    for s in spec.inputs.values():
        try:
            _, opts = parse_spec(s.encoder)
        except ValueError:
            continue  # a malformed spec fails later, with its own message
        if any(k.strip().lower() == "trust_remote_code" and v.strip().lower() not in ("0", "false", "no", "off", "")
               for k, v in opts.items()):
            found.append(s.encoder)
    return found


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise BundleError(f"{path.parent}: no {path.name}; not a run directory or exported bundle")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None


def read_spec(path: str | Path, unit: str | None = None) -> BundleSpec:
    """The spec of a run directory or an exported bundle (see the module docstring).

    unit: for a run trained over several folds or seeds, which unit's weights to use
    ('fold0/seed1'); default: the top-level weights, else the first unit in sorted order."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model folder not found: {path}")
    if (path / BUNDLE_FILE).is_file():
        return _spec_from_export(path)
    if (path / "config.yaml").is_file():
        return _spec_from_run(path, unit)
    raise BundleError(
        f"{path}: neither an exported bundle ({BUNDLE_FILE}) nor a run directory (config.yaml); "
        "point --model at runs/<name> or at a folder written by `emofuse export`"
    )


def _spec_from_export(path: Path) -> BundleSpec:
    d = _read_json(path / BUNDLE_FILE)
    if d.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path / BUNDLE_FILE}: format is {d.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    if int(d.get("version", 0)) > BUNDLE_VERSION:
        raise BundleError(f"{path / BUNDLE_FILE}: bundle version {d['version']} is newer than this emofuse "
                          f"reads ({BUNDLE_VERSION}); upgrade emofuse")
    if "digest" not in d:
        raise BundleError(f"{path / BUNDLE_FILE}: no digest of its own content (written by emofuse before bundle "
                          f"version 2, or edited); export it again from its run: emofuse export RUN --out DIR")
    if _digest(d) != d["digest"]:
        raise BundleError(f"{path / BUNDLE_FILE}: its content does not match its digest; the file was changed "
                          "after export (model, labels, inputs or decoding), so it is not loaded")
    for name, digest in d.get("files", {}).items():
        f = path / name
        if not f.is_file():
            raise BundleError(f"{path}: {name} is missing")
        if _sha256(f) != digest:
            raise BundleError(f"{f}: sha256 differs from the one in {BUNDLE_FILE}; the file was changed or damaged")
    try:
        inputs = {k: InputSpec(k, v["encoder"], v.get("fingerprint", ""), int(v["dim"]), bool(v.get("sequence", False)))
                  for k, v in d["inputs"].items()}
        return BundleSpec(
            path=path, name=d["name"], model=d["model"]["name"], params=dict(d["model"].get("params", {})),
            labels=LabelSet.from_dict(d["labels"]), inputs=inputs, decoding=Decoding(**d.get("decoding", {})),
            weights=path / WEIGHTS, standardiser=path / STANDARDISER, info=dict(d.get("info", {})),
        )
    except (KeyError, TypeError) as e:
        raise BundleError(f"{path / BUNDLE_FILE}: missing or malformed entry {e}") from None


def _spec_from_run(path: Path, unit: str | None) -> BundleSpec:
    from emofuse.config import ConfigError, RunConfig, load_config

    try:
        cfg = load_config(RunConfig, path / "config.yaml")
    except ConfigError as e:
        raise BundleError(f"{path / 'config.yaml'}: {e}") from None
    labels = LabelSet.from_dict(_read_json(path / "labels.json"))
    encoders = _read_json(path / "encoders.json")
    seq = cfg.data.sequence
    inputs = {}
    for k, v in encoders.items():
        modality = k.split(":")[0]
        sequence = seq.get(modality, False) if isinstance(seq, dict) else bool(seq)
        inputs[k] = InputSpec(k, v["encoder"], v.get("fingerprint", ""), int(v["dim"]), sequence)
    decoding = Decoding()
    recorded = [v["decoding"] for v in encoders.values() if v.get("decoding")]
    if any(s.encoder == RAW for s in inputs.values()):  # the model decodes its media as data/raw.py does
        raw = cfg.data.raw
        decoding = Decoding(video_sampling=f"every_n={raw.every_n}", face_size=int(raw.face_size))
    elif recorded:  # the video decoding the features were extracted with: predict decodes the same way
        d = recorded[0]
        sampling = ",".join(f"{k}={v}" for k, v in (d.get("video_sampling") or {}).items()) or Decoding.video_sampling
        decoding = Decoding(video_sampling=sampling, face_size=int(d.get("face_size", Decoding.face_size)),
                            no_face=str(d.get("no_face", Decoding.no_face)))
    unit_dir = _unit_dir(path, unit)
    info: dict[str, Any] = {"source": str(path.resolve())}
    if unit_dir != path:
        info["unit"] = unit_dir.relative_to(path).as_posix()
    if (path / "metrics.json").is_file():
        m = json.loads((path / "metrics.json").read_text())
        info.update({"corpus": m.get("corpus"), "synthetic": bool(m.get("synthetic", False)),
                     "test": {k: v for k, v in m.get("test", {}).items() if not k.endswith("_std")}})
        if m.get("version"):  # a released model's (emofuse-base)
            info["version"] = m["version"]
    if (path / "versions.json").is_file():
        info["versions"] = json.loads((path / "versions.json").read_text())
    return BundleSpec(
        path=path, name=cfg.name, model=cfg.model.name, params=dict(cfg.model.params), labels=labels,
        inputs=inputs, decoding=decoding, weights=unit_dir / WEIGHTS, standardiser=unit_dir / STANDARDISER, info=info,
    )


def _unit_dir(path: Path, unit: str | None) -> Path:
    if unit:
        d = path / unit
        if not (d / WEIGHTS).is_file():
            raise BundleError(f"{path}: no {WEIGHTS} in unit {unit!r}; units: {', '.join(_units(path)) or 'none'}")
        return d
    if (path / WEIGHTS).is_file():
        return path
    units = _units(path)
    if not units:
        raise BundleError(f"{path}: no {WEIGHTS}; the run did not finish training")
    # Several folds or seeds each saved their own weights; take the first, and say so.
    log.warning("%s holds %d trained units (%s); using %s (choose another with unit=...)",
                path, len(units), ", ".join(units), units[0])
    return path / units[0]


def _units(path: Path) -> list[str]:
    return sorted(p.parent.relative_to(path).as_posix() for p in path.rglob(WEIGHTS) if p.parent != path)


# ---------------------------------------------------------------------------------------------
# loading


@dataclass
class Bundle:
    """A loaded bundle: the model (eval mode), the standardiser, and one built encoder per input."""

    spec: BundleSpec
    model: torch.nn.Module
    standardiser: dict[str, tuple[np.ndarray, np.ndarray]]  # input key -> (mean, std), each (D,)
    encoders: dict[str, Any]  # input key -> Encoder (none for a raw input: the model reads the media)
    warnings: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return list(self.spec.labels.classes)

    @property
    def weight_names(self) -> list[str]:
        return list(self.model.weight_names)

    @property
    def candidate_names(self) -> list[str] | None:
        return self.model.candidate_names


def build_encoders(spec: BundleSpec, trust_remote_code: bool = False) -> tuple[dict[str, Any], list[str]]:
    """One encoder per input, built on this machine; raises MissingEncodersError naming all that
    cannot be built. Returns (encoders, warnings about fingerprints that differ from training).
    An encoder spec asking for trust_remote_code is refused (BundleError) before anything is built,
    unless trust_remote_code: the user's own decision, never the bundle's."""
    from emofuse.features.encoders.hf import build_encoder

    if (remote := remote_code_specs(spec)) and not trust_remote_code:
        raise BundleError(f"{spec.path}: encoder {', '.join(remote)} asks for trust_remote_code, which would run "
                          "Python files from the model folder; a bundle never runs code on its own. If you trust "
                          "that folder, pass --trust-remote-code")

    built: dict[str, Any] = {}
    by_spec: dict[str, Any] = {}
    missing: dict[str, str] = {}
    warnings: list[str] = []
    for key, s in spec.inputs.items():
        if s.encoder == RAW:  # the model reads the decoded media itself (fine-tuned / zero-shot models)
            continue
        if s.encoder in by_spec:
            built[key] = by_spec[s.encoder]
            continue
        try:
            enc = build_encoder(s.encoder)
            fingerprint = enc.fingerprint()  # reads the config and hashes the weights: proves they are there
        except (ImportError, FileNotFoundError, OSError, KeyError, ValueError) as e:
            missing[s.encoder] = f"{type(e).__name__}: {e}"
            continue
        if enc.modality != s.modality:
            raise BundleError(f"input {key!r} expects a {s.modality} encoder, but {s.encoder!r} encodes {enc.modality}")
        if enc.dim != s.dim:
            raise BundleError(f"input {key!r}: encoder {s.encoder!r} gives {enc.dim}-d features here, "
                              f"the model was trained on {s.dim}-d")
        if s.fingerprint and fingerprint != s.fingerprint:
            # Same name and width, other weights or library version: it runs, but may drift.
            warnings.append(f"encoder {s.encoder!r} differs from the one the model was trained with "
                            f"(fingerprint {fingerprint[:12]}, trained with {s.fingerprint[:12]}); "
                            "predictions may drift")
        built[key] = by_spec[s.encoder] = enc
    if missing:
        raise MissingEncodersError(missing)
    return built, warnings


def load_standardiser(path: Path, keys) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise BundleError(f"{path.parent}: no {path.name}")
    tensors = load_file(str(path))
    out = {}
    for k in keys:
        try:
            out[k] = (tensors[f"{k}.mean"].astype(np.float32), tensors[f"{k}.std"].astype(np.float32))
        except KeyError:
            raise BundleError(f"{path}: no statistics for input {k!r}") from None
    return out


def load_bundle(path: str | Path, *, unit: str | None = None, device: str = "cpu",
                trust_remote_code: bool = False) -> Bundle:
    """Load a run directory or exported bundle for inference (see the module docstring).

    Raises BundleError for a missing or damaged bundle (or one whose encoders ask for
    trust_remote_code, unless trust_remote_code) and MissingEncodersError, naming them, when its
    encoders cannot be built here. device: 'cpu', 'cuda' or 'auto'."""
    from safetensors.torch import load_file

    from emofuse.config import ConfigError
    from emofuse.registry import UnknownNameError
    from emofuse.models.build import build_model

    spec = read_spec(path, unit)
    encoders, warnings = build_encoders(spec, trust_remote_code)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = build_model(spec.model, spec.params, {k: s.dim for k, s in spec.inputs.items()}, len(spec.labels))
    except (ConfigError, UnknownNameError) as e:
        raise BundleError(f"{spec.path}: cannot build model {spec.model!r}: {e}") from None
    if spec.weights is None or not spec.weights.is_file():
        raise BundleError(f"{spec.path}: no {WEIGHTS}")
    state = load_file(str(spec.weights))  # safetensors: tensors only, nothing executed
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise BundleError(f"{spec.weights}: weights do not fit model {spec.model!r}: {e}") from None
    model.eval().to(device)
    standardiser = load_standardiser(spec.standardiser, [k for k, s in spec.inputs.items() if s.encoder != RAW])
    return Bundle(spec, model, standardiser, encoders, warnings)


def export_bundle(src: str | Path, out: str | Path, *, unit: str | None = None) -> Path:
    """Write one self-contained folder for `src` (a run directory or a bundle): bundle.json,
    the weights and the standardiser (sha256 recorded), and the config and versions for the
    record. Checks that the result loads its weights; does not need the encoders."""
    spec = read_spec(src, unit)
    out = Path(out)
    if out.resolve() == spec.path.resolve():
        raise BundleError(f"export to a folder other than the source: {out}")
    out.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for f, name in ((spec.weights, WEIGHTS), (spec.standardiser, STANDARDISER)):
        if f is None or not f.is_file():
            raise BundleError(f"{spec.path}: no {name}")
        shutil.copyfile(f, out / name)
        hashes[name] = _sha256(out / name)
    for extra in ("config.yaml", "versions.json"):
        if (spec.path / extra).is_file():
            shutil.copyfile(spec.path / extra, out / extra)
            hashes[extra] = _sha256(out / extra)
    d = spec.to_json(hashes)
    d["digest"] = _digest(d)
    (out / BUNDLE_FILE).write_text(json.dumps(d, indent=2))
    return out
