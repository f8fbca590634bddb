"""The Hugging Face encoder on tiny random checkpoints of each family, loaded by folder through
build_encoder("hf:<folder>"), and the spec parser."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from emofuse.features import build_encoder
from emofuse.features.encoders import hf
from emofuse.features.encoders.loading import file_digest
from emofuse.registry import UnknownNameError
from tests.features.tiny_hf import build

KINDS = {  # kind -> (modality, dim with layers=last, dim with layers=last4)
    "bert": ("text", 32, 32),
    "roberta": ("text", 32, 32),
    "llama": ("text", 32, 32),
    "hubert": ("audio", 32, 32),
    "wav2vec2": ("audio", 32, 32),
    "wavlm": ("audio", 32, 32),
    "vit": ("video", 32, 32),
    "clip_vision": ("video", 16, 32),  # layers=last: the 16-d projected image embedding
    "clip": ("video", 16, 32),
}
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask:UserWarning")  # torch, inside WavLM
TEXTS = ["I am so happy", "what a joyful day, a joyful day indeed"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_hf")
    return {k: build(k, root / k) for k in KINDS}


def _inputs(modality: str, rng: np.random.Generator) -> list:
    if modality == "text":
        return list(TEXTS)
    if modality == "audio":
        return [rng.standard_normal(16000).astype(np.float32), rng.standard_normal(6000).astype(np.float32)]
    return [rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8), rng.integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)]


@pytest.mark.parametrize("kind", list(KINDS))
def test_family_shapes_and_layers(tiny, kind):
    modality, dim, dim4 = KINDS[kind]
    enc = build_encoder(f"hf:{tiny[kind]}")
    enc4 = build_encoder(f"hf:{tiny[kind]}@layers=last4")
    assert (enc.modality, enc.dim, enc4.dim) == (modality, dim, dim4)
    assert enc.name == f"hf-{kind}" and enc4.name == f"hf-{kind}-last4"
    assert enc.fingerprint() != enc4.fingerprint()
    items = _inputs(modality, np.random.default_rng(0))
    out, out4 = enc.encode(items), enc4.encode(items)
    assert len(out) == len(items)
    for item, e, e4 in zip(items, out, out4):
        assert e.vector.shape == (dim,) and e.vector.dtype == np.float32 and np.isfinite(e.vector).all()
        assert e.sequence.ndim == 2 and e.sequence.shape[1] == dim
        assert e4.sequence.shape == (len(e.sequence), dim4)
        np.testing.assert_allclose(e.vector, e.sequence.mean(0), rtol=1e-5, atol=1e-6)
        if modality == "video":
            assert len(e.sequence) == len(item)  # one vector per frame
        if modality == "audio":  # 20 ms frames of this conv stack: (n - 10) // 5 + 1, then (m - 3) // 2 + 1
            assert len(e.sequence) == ((len(item) - 10) // 5 + 1 - 3) // 2 + 1
        if dim == dim4:
            assert not np.allclose(e.vector, e4.vector)
    if modality == "text":  # the sequence is the real tokens, without padding
        tok_lens = [len(enc._processor(t)["input_ids"]) for t in TEXTS]
        assert [len(e.sequence) for e in out] == tok_lens


@pytest.mark.parametrize("kind", ["bert", "llama", "hubert", "wav2vec2"])
def test_batching_does_not_change_outputs(tiny, kind):
    """Padding in a batch must not leak into the features (masking, right padding for LLMs)."""
    enc = build_encoder(f"hf:{tiny[kind]}")
    items = _inputs(enc.modality, np.random.default_rng(1))
    together = enc.encode(items)
    alone = [enc.encode([x])[0] for x in items]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-4)
        assert a.sequence.shape == b.sequence.shape


def test_clip_vector_is_the_image_embedding(tiny):
    import torch
    from transformers import CLIPImageProcessorPil, CLIPModel

    frame = np.random.default_rng(2).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    got = build_encoder(f"hf:{tiny['clip']}").encode([frame])[0].vector
    model = CLIPModel.from_pretrained(tiny["clip"]).eval()
    px = CLIPImageProcessorPil.from_pretrained(tiny["clip"])(images=list(frame), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        want = model.get_image_features(pixel_values=px)
    want = getattr(want, "pooler_output", want)[0].numpy()  # transformers 5 may wrap it in an output object
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_fingerprint_follows_the_weights(tmp_path):
    folder = build("vit", tmp_path / "vit", seed=0)
    fp0 = build_encoder(f"hf:{folder}").fingerprint()
    build("vit", folder, seed=1)
    fp1 = build_encoder(f"hf:{folder}").fingerprint()
    build("vit", folder, seed=0)
    assert fp1 != fp0
    assert build_encoder(f"hf:{folder}").fingerprint() == fp0  # same weights, same fingerprint
    # ... wherever the folder lives.
    moved = tmp_path / "elsewhere" / "vit"
    moved.parent.mkdir()
    os.rename(folder, moved)
    assert build_encoder(f"hf:{moved}").fingerprint() == fp0


def test_weight_digest_samples_large_files(tmp_path):
    big = tmp_path / "model.safetensors"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 6 << 20, dtype=np.uint8).tobytes())
    big.write_bytes(data)
    d0 = file_digest(big)
    data[10] ^= 1  # in the first MiB
    big.write_bytes(data)
    d1 = file_digest(big)
    data[len(data) - 10] ^= 1  # in the last MiB
    big.write_bytes(data)
    d2 = file_digest(big)
    big.write_bytes(data + b"x")  # size
    assert len({d0, d1, d2, file_digest(big)}) == 4


def test_hub_snapshot_folder_gives_revision_name_and_blob_digest(tmp_path, tiny):
    commit, blob = "a" * 40, "b" * 64
    repo = tmp_path / "models--someorg--tiny-bert"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in tiny["bert"].iterdir():
        target = repo / "blobs" / (blob if f.suffix == ".safetensors" else f"{f.name}.blob")
        target.write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(target)
    enc = build_encoder(f"hf:{snap}")
    assert enc.name == "hf-tiny-bert"
    assert enc.config()["revision"] == commit and enc.config()["model"] == "someorg/tiny-bert"
    assert file_digest(snap / "model.safetensors") == blob  # the hub's content hash, no reading
    assert enc.encode(["hello"])[0].vector.shape == (32,)


def test_spec_parsing_and_errors(tiny):
    assert hf.parse_spec("hf:org/model@layers=last4,max_length=64") == ("hf:org/model", {"layers": "last4", "max_length": "64"})
    assert hf.parse_spec("minilm") == ("minilm", {})
    assert hf.parse_spec("hf:/a/b@c/model") == ("hf:/a/b@c/model", {})  # an '@' in a path is not options
    enc = build_encoder(f"hf:{tiny['bert']}@max_length=8,batch_size=1")
    assert enc.max_length == 8 and enc.batch_size == 1 and enc.name == "hf-bert-len8"
    assert len(enc.encode(["a long sentence that is surely cut after eight tokens"])[0].sequence) == 8
    with pytest.raises(UnknownNameError) as e:
        build_encoder("no-such-encoder")
    assert "minilm" in str(e.value) and "hf:<" in str(e.value)
    with pytest.raises(ValueError, match="options: .*layers"):
        build_encoder(f"hf:{tiny['bert']}@layer=last4")
    with pytest.raises(ValueError, match="last4"):
        build_encoder(f"hf:{tiny['bert']}@layers=first")
    with pytest.raises(FileNotFoundError):
        build_encoder("hf:/no/such/folder")
    with pytest.raises(ValueError, match="stats"):
        build_encoder("mfcc@stat=mean")
    assert build_encoder("mfcc@stats=mean_std").dim == 80
    assert build_encoder(enc) is enc


def test_unknown_model_type_names_the_known_ones():
    with pytest.raises(ValueError, match="hubert"):
        hf.modality_of("t5")
    assert hf.modality_of("my_lm", ["MyLMForCausalLM"]) == "text"


def test_half_precision_falls_back_to_fp32_on_cpu(tiny):
    enc = build_encoder(f"hf:{tiny['vit']}@device=cpu,dtype=bf16")
    assert enc.dtype == "fp32" and enc.config()["dtype"] == "fp32"
