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
    assert {"model.safetensors", "standardiser.safetensors"} == set(d["files"])
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


def test_missing_encoders_are_named(fusion_dir, tmp_path):
    out = export_bundle(fusion_dir, tmp_path / "bundle")
    d = json.loads((out / "bundle.json").read_text())
    d["inputs"]["text"]["encoder"] = f"hf:{tmp_path / 'no-such-model'}"
    d["inputs"]["video"]["encoder"] = "facenet-512"
    (out / "bundle.json").write_text(json.dumps(d))
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
