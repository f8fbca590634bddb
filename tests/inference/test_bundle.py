"""Model bundles: a run directory and an exported folder load the same model, without unpickling,
and a bundle whose encoders are missing fails naming them."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from emofuse.inference import BundleError, MissingEncodersError, export_bundle, load_bundle, read_spec


def test_run_directory_spec(fusion_dir):
    spec = read_spec(fusion_dir)
    assert spec.model == "attention" and spec.labels.classes[:2] == ("neutral", "angry")
    assert {k: s.encoder for k, s in spec.inputs.items()} == {"audio": "egemaps", "text": "minilm", "video": "fer2013"}
    assert all(len(s.fingerprint) == 64 for s in spec.inputs.values())
    assert spec.info["synthetic"] is True


def test_export_is_self_contained_and_loads_without_unpickling(fusion_dir, tmp_path, monkeypatch, predictor, media):
    from emofuse.inference import Clip, Predictor

    out = export_bundle(fusion_dir, tmp_path / "bundle")
    d = json.loads((out / "bundle.json").read_text())
    assert {"model.safetensors", "standardiser.safetensors", "config.yaml", "versions.json"} == set(d["files"])
    assert d["labels"]["classes"] == list(predictor.bundle.classes)
    assert d["inputs"]["video"] == {"encoder": "fer2013", "fingerprint": predictor.spec.inputs["video"].fingerprint,
                                    "dim": 135, "sequence": False}
    assert not any(p.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt") for p in out.iterdir())

    def refuse(*a, **k):
        raise AssertionError("a bundle must load without unpickling")

    for mod, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(mod, name, refuse)
    b = load_bundle(out)
    monkeypatch.undo()
    # the exported bundle, on its own, predicts what the run directory does
    clip = Clip(video=media["good"], text="I am so happy today!")
    a, e = predictor.predict(clip), Predictor(b).predict(clip)
    assert a.label == e.label
    assert all(abs(a.probabilities[c] - e.probabilities[c]) < 1e-5 for c in a.probabilities)


def test_changed_weights_are_refused(fusion_dir, tmp_path):
    out = export_bundle(fusion_dir, tmp_path / "bundle")
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 differs"):
        read_spec(out)


def _rewrite(out, d) -> None:
    """bundle.json edited and its digest recomputed, as someone who knows the format would."""
    from emofuse.inference.bundle import _digest

    d["digest"] = _digest(d)
    (out / "bundle.json").write_text(json.dumps(d))


def test_missing_encoders_are_named(fusion_dir, tmp_path):
    out = export_bundle(fusion_dir, tmp_path / "bundle")
    d = json.loads((out / "bundle.json").read_text())
    d["inputs"]["text"]["encoder"] = f"hf:{tmp_path / 'no-such-model'}"
    d["inputs"]["video"]["encoder"] = "facenet-512"
    _rewrite(out, d)
    with pytest.raises(MissingEncodersError) as e:
        load_bundle(out)
    assert set(e.value.missing) == {f"hf:{tmp_path / 'no-such-model'}", "facenet-512"}
    msg = str(e.value)
    assert "2 encoder(s)" in msg and "no-such-model" in msg and "facenet-512" in msg


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        read_spec(tmp_path / "nothing")
    with pytest.raises(BundleError, match="neither an exported bundle"):
        read_spec(tmp_path)


def test_bundle_json_content_is_covered_by_its_digest(fusion_dir, tmp_path):
    out = export_bundle(fusion_dir, tmp_path / "bundle")
    d = json.loads((out / "bundle.json").read_text())
    assert {"model.safetensors", "standardiser.safetensors", "config.yaml", "versions.json"} == set(d["files"])
    read_spec(out)  # as exported: loads
    for edit in (lambda d: d["labels"]["classes"].reverse(),
                 lambda d: d["inputs"]["text"].update(encoder="minilm-last4"),
                 lambda d: d["model"]["params"].update(hidden=7),
                 lambda d: d["decoding"].update(face_size=64)):
        e = json.loads(json.dumps(d))
        edit(e)
        (out / "bundle.json").write_text(json.dumps(e))
        with pytest.raises(BundleError, match="does not match its digest"):
            read_spec(out)
    del d["digest"]
    (out / "bundle.json").write_text(json.dumps(d))
    with pytest.raises(BundleError, match="no digest"):
        read_spec(out)
    d["digest"] = "0" * 64
    (out / "bundle.json").write_text(json.dumps(d))
    (out / "config.yaml").write_text("name: other\n")  # the copied config is hashed too
    _rewrite(out, d)
    with pytest.raises(BundleError, match="config.yaml: sha256 differs"):
        read_spec(out)


@pytest.fixture
def evil_model(tmp_path):
    """A model folder whose config class is its own Python file; importing it writes a marker."""
    folder = tmp_path / "evil-model"
    folder.mkdir()
    marker = tmp_path / "PWNED"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evilcfg", "auto_map": {"AutoConfig": "configuration_evilcfg.EvilConfig"}}))
    (folder / "configuration_evilcfg.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('code from the bundle ran')\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n"
        "    model_type = 'evilcfg'\n")
    return folder, marker


def test_a_bundle_cannot_make_us_run_its_code(fusion_dir, tmp_path, evil_model, media):
    from typer.testing import CliRunner

    from emofuse.cli import app

    folder, marker = evil_model
    out = export_bundle(fusion_dir, tmp_path / "bundle")
    d = json.loads((out / "bundle.json").read_text())
    d["inputs"]["text"]["encoder"] = f"hf:{folder}@trust_remote_code=true"
    _rewrite(out, d)
    with pytest.raises(BundleError, match="trust_remote_code.*--trust-remote-code"):
        load_bundle(out)
    assert not marker.exists()
    r = CliRunner().invoke(app, ["predict", "--model", str(out), "--audio", str(media["wav"]), "--text", "hello"])
    assert r.exit_code != 0 and "trust-remote-code" in r.output and "Traceback" not in r.output
    assert not marker.exists()
    # the payload is live: the user's own --trust-remote-code runs it (then fails: it is no encoder)
    with pytest.raises(Exception):
        load_bundle(out, trust_remote_code=True)
    assert marker.read_text() == "code from the bundle ran"
