"""The default model (emofuse-base) the package ships: predict and serve use it without --model and
say which model answered; its files are the ones its bundle pins (a changed weight file is refused);
its face network is the one its inputs record; `build-model` with one seed gives the same weights
twice (on a slice of the real data)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from typer.testing import CliRunner

from emofuse.cli import app
from emofuse.inference.default import DEFAULT_MODEL, default_model
from tests.conftest import need

runner = CliRunner()
CLASSES = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def test_the_shipped_files_are_the_ones_the_bundle_pins():
    from emofuse.features.encoders.face_net import SHIPPED_NETS, FaceNetEncoder
    from emofuse.features.encoders.text_net import SHIPPED as TEXT_NET
    from emofuse.features.encoders.text_net import TextNetEncoder
    from emofuse.inference.bundle import read_spec

    spec = read_spec(default_model())  # checks bundle.json's digest and every file's sha256
    d = json.loads((DEFAULT_MODEL / "bundle.json").read_text())
    for name, digest in d["files"].items():
        assert hashlib.sha256((DEFAULT_MODEL / name).read_bytes()).hexdigest() == digest, name
    assert spec.name == "emofuse-base" and list(spec.labels.classes) == CLASSES and spec.info.get("version")
    # the face expert's networks: the package's, with the weights the model was built with
    assert spec.inputs["video:emofuse-face"].encoder == "emofuse-face" and len(SHIPPED_NETS) == 3
    assert FaceNetEncoder(SHIPPED_NETS, name="emofuse-face").fingerprint() == spec.inputs["video:emofuse-face"].fingerprint
    # the text expert's network: the package's, the one the model was built with
    assert spec.inputs["text"].encoder == "emofuse-text"
    assert TextNetEncoder(TEXT_NET, name="emofuse-text").fingerprint() == spec.inputs["text"].fingerprint
    assert (DEFAULT_MODEL / "model_card.md").is_file()
    files = [p for p in DEFAULT_MODEL.parent.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 40 * 2**20  # the budget for weights in the repository
    assert max(p.stat().st_size for p in files) <= 5 * 10**6  # and no file over 5 MB in the repository


def test_a_changed_weight_file_is_refused(tmp_path):
    from emofuse.inference.bundle import BundleError, load_bundle

    copy = shutil.copytree(DEFAULT_MODEL, tmp_path / "base")
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.safetensors"):
        load_bundle(copy)


def test_predict_without_a_model_answers_with_the_default(media):
    res = runner.invoke(app, ["predict", str(media["good"]), "--json", "--text", "I am so happy to see you"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["model"]["name"] == "emofuse-base" and out["model"]["classes"] == CLASSES
    assert set(out["probabilities"]) == set(CLASSES)
    assert out["modalities"]["text"]["used"] and out["modalities"]["audio"]["used"]
    res = runner.invoke(app, ["predict", "--model-card"])
    assert res.exit_code == 0 and res.output.startswith("# Model card: emofuse-base")


def test_the_default_model_transcribes_and_drops_words_that_are_not_english(media, monkeypatch):
    """Without --text the default model transcribes (--asr on), and leaves out words Whisper hears as
    another language (--asr-foreign drop: its text expert reads English); both can be turned back."""
    from emofuse.features.encoders.whisper import Transcript

    asked = []
    monkeypatch.setattr("emofuse.inference.predict.transcript",
                        lambda path, model="whisper-base", sr=16000, foreign="keep": asked.append(foreign)
                        or Transcript("", "pl", dropped=True))
    res = runner.invoke(app, ["predict", str(media["good"]), "--json"])
    out = json.loads(res.output[res.output.index("{"):])
    assert asked == ["drop"] and not out["modalities"]["text"]["used"]
    assert "text: speech recognised (Whisper-base, pl, not English: not used); text treated as absent" in out["warnings"]
    runner.invoke(app, ["predict", str(media["good"]), "--json", "--asr-foreign", "keep"])
    runner.invoke(app, ["predict", str(media["good"]), "--json", "--no-asr"])
    assert asked == ["drop", "keep"]


def test_serve_without_a_model_answers_with_the_default(media):
    from fastapi.testclient import TestClient

    from emofuse.inference.serve import create_app

    with TestClient(create_app(default_model(), warm_up=False)) as client:
        r = client.post("/predict", files={"file": ("clip.mp4", media["good"].read_bytes(), "video/mp4")},
                        params={"text": "what a terrible day"})
        assert r.status_code == 200, r.text
        assert r.json()["model"]["name"] == "emofuse-base" and r.json()["model"]["classes"] == CLASSES
        assert client.get("/health").json()["model"] == "emofuse-base"


@pytest.mark.realdata
def test_build_model_twice_with_one_seed_gives_the_same_weights(data_root, tmp_path):
    import torch

    from emofuse.bench.emofuse_base import build_base_model
    from emofuse.corpora.base import FACE_IMAGES, Manifest
    from emofuse.features.encoders.face_net import FaceNet, save_face_net
    from emofuse.features.encoders.text_net import weights_bytes

    for sub in ("ravdess_speech", "nemo", "urdu", "meld", "goemotions", "fer2013_train"):
        need(data_root, sub)
    torch.manual_seed(0)
    net = save_face_net(FaceNet(7, 4, 2), tmp_path / "face", size=48, width=4, blocks=2, tta_flip=True)
    cache = tmp_path / "cache"  # shared: the second build reads the features the first extracted
    a = build_base_model(data_root, tmp_path / "a", cache=cache, face_net=net, limit=12, progress=False)
    b = build_base_model(data_root, tmp_path / "b", cache=cache, face_net=net, limit=12, progress=False)
    for f in ("emofuse-base/model.safetensors", "emofuse-base/standardiser.safetensors", "text-net/config.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert weights_bytes(tmp_path / "a" / "text-net") == weights_bytes(tmp_path / "b" / "text-net")
    # the text network: one per training seed, the one best on validation kept (a tie: the lower seed)
    from emofuse.bench.emofuse_base import TEXT_SEEDS

    tn = a["text_net"]
    assert sorted(tn["seeds"], key=int) == [str(s) for s in range(TEXT_SEEDS)] and TEXT_SEEDS > 1
    vals = {int(s): t["val"]["weighted_f1"] for s, t in tn["seeds"].items()}
    assert tn["seed"] == min(s for s in vals if vals[s] == max(vals.values()))
    assert tn["val"] == tn["seeds"][str(tn["seed"])]["val"]
    assert weights_bytes(tmp_path / "a" / "text-net") == weights_bytes(tmp_path / "a" / "text-nets" / f"seed{tn['seed']}")
    assert len({weights_bytes(tmp_path / "a" / "text-nets" / f"seed{s}") for s in vals}) == TEXT_SEEDS  # seeds differ
    text_rows = Manifest.load(tmp_path / "a" / "work" / "text" / "manifest.csv").df
    goe = text_rows["id"].str.startswith("goemotions:")
    assert goe.any() and set(text_rows.loc[goe, "split"]) == {"test"}  # GoEmotions only tested on (TEXT_MIX = 0)
    assert a["paired"]["test"] == b["paired"]["test"]
    card = (tmp_path / "a" / "model_card.md").read_text()
    assert "non-commercial research only" in card and "bench paired" in card
    assert set(a["experts"]) == {"speech", "text", "face"} and a["paired"]["rows"]["test"] > 0
    assert set(a["experts"]["text"]["test_by_corpus"]) == {"meld", "goemotions"} and "| text | meld |" in card
    # the ablation: each expert dropped from the product, on both paired splits, in the card
    assert set(a["paired"]["without_val"]) == set(a["paired"]["without_test"]) == {"audio", "text", "video"}
    assert "| fused without text |" in card and "| fused (all three) |" in card
    spec = json.loads((tmp_path / "a" / "emofuse-base" / "bundle.json").read_text())
    assert spec["inputs"]["text"]["encoder"] == "emofuse-text" and spec["inputs"]["text"]["dim"] == 7 + 384
    # the face expert reads FER2013 at its own 48 px; clips are decoded as the fusion's paired rows were

    assert Manifest.load(tmp_path / "a" / "work" / "face" / "manifest.csv").meta["decoding"]["face_size"] == 48
    assert spec["decoding"]["face_size"] == FACE_IMAGES["face_size"] == 64


def test_the_text_manifest_mixes_goemotions_rows_per_meld_row(data_root, tmp_path):
    from emofuse.bench.driver import BenchOptions
    from emofuse.bench.emofuse_base import _text
    from emofuse.corpora.base import Manifest

    for sub in ("meld", "goemotions"):
        need(data_root, sub)
    counts = {}
    for r in (0.0, 0.5, 1.0):
        opts = BenchOptions(data=data_root, out=tmp_path / f"mix-{r}", progress=False)
        df = Manifest.load(_text(opts, goemotions_per_meld=r)).df
        corpus = df["id"].str.split(":").str[0]
        counts[r] = {(c, s): int(((corpus == c) & (df["split"] == s)).sum()) for c in ("meld", "goemotions")
                     for s in ("train", "val", "test")}
        for s in ("train", "val"):
            assert counts[r][("goemotions", s)] == round(r * counts[r][("meld", s)]), (r, s, counts[r])
        assert counts[r][("goemotions", "test")] > 0  # GoEmotions' test split is whole at any mix
    assert counts[0.0][("meld", "train")] == counts[1.0][("meld", "train")] > 0
    with pytest.raises(ValueError, match="goemotions_per_meld"):
        _text(BenchOptions(data=data_root, out=tmp_path / "bad", progress=False), goemotions_per_meld=-1)


def test_predict_and_serve_share_the_transcription_defaults():
    from emofuse.inference.default import asr_defaults

    assert asr_defaults(True, None, None) == (True, "drop")  # the default model: transcribe, drop what is not English
    assert asr_defaults(False, None, None) == (False, "keep")  # a --model: only when asked, keep what is heard
    assert asr_defaults(True, False, "translate") == (False, "translate")  # what the user says wins
    assert asr_defaults(False, True, None) == (True, "keep")
