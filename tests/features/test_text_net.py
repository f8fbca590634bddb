"""A text network fine-tuned here, saved as what fine-tuning changed (features/encoders/text_net.py):
the encoder rebuilt from its base gives the fine-tuned model's own probabilities; a moved embedding
table, another base or a changed file are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emofuse.features.encoders.text_net import TextNetEncoder, save_text_net
from emofuse.models.build import build_model
from tests.features.tiny_hf import build

C = 3
TEXTS = ["I am so happy today", "the table is brown", "she was angry and sad and the dogs are sitting by the door"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return build("bert", tmp_path_factory.mktemp("bert"))


def _tuned(bert):
    """finetune_text with its embedding table frozen, one optimiser step taken (the layers moved)."""
    torch.manual_seed(0)
    model = build_model("finetune_text", {"encoder": f"hf:{bert}", "freeze_input_embeddings": True,
                                          "max_length": 8}, {"text": 0}, C)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    loss = model({"text": TEXTS})["logits"].logsumexp(-1).mean()
    loss.backward()
    opt.step()
    return model.eval()


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 2e-3)])
def test_the_encoder_gives_the_fine_tuned_models_probabilities(bert, tmp_path, dtype, tol):
    model = _tuned(bert)
    folder = save_text_net(model.backbone, model.head[1], tmp_path / "net", base=f"hf:{bert}", pooling="mean",
                           max_length=8, classes=["a", "b", "c"], dtype=dtype)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "emofuse-text-net" and cfg["classes"] == ["a", "b", "c"]
    from safetensors.torch import load

    from emofuse.features.encoders.text_net import weights_bytes

    stored = load(weights_bytes(folder))
    assert "embeddings.word_embeddings.weight" not in stored and {"head.weight", "head.bias"} <= set(stored)
    assert all(v.dtype == getattr(torch, dtype) for v in stored.values() if v.is_floating_point())
    enc = TextNetEncoder(folder)
    assert enc.dim == C + 32 and enc.modality == "text"
    with torch.no_grad():
        want = torch.softmax(model({"text": TEXTS})["logits"], -1).numpy()
        pooled = model.encode({"text": TEXTS}).numpy()
    got = enc.encode(TEXTS + [""])
    assert got[-1] is None  # no words: no text evidence
    vec = np.stack([g.vector for g in got[:-1]])
    assert np.allclose(vec[:, :C], want, atol=tol) and np.allclose(vec[:, C:], pooled, atol=tol * 10)
    assert not np.allclose(vec[:, :C], np.full_like(want, 1 / C), atol=1e-3)
    assert enc.fingerprint() == TextNetEncoder(folder).fingerprint()


def test_refuses_a_moved_embedding_table_another_base_and_foreign_weights(bert, tmp_path):
    model = build_model("finetune_text", {"encoder": f"hf:{bert}"}, {"text": 0}, C)
    with torch.no_grad():
        model.backbone.get_input_embeddings().weight.add_(0.1)
    with pytest.raises(ValueError, match="freeze_input_embeddings"):
        save_text_net(model.backbone, model.head[1], tmp_path / "moved", base=f"hf:{bert}", pooling="mean",
                      max_length=8, classes=["a", "b", "c"])
    folder = save_text_net(_tuned(bert).backbone, _tuned(bert).head[1], tmp_path / "net", base=f"hf:{bert}",
                           pooling="mean", max_length=8, classes=["a", "b", "c"])
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(cfg | {"base_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="fine-tuned from another"):
        TextNetEncoder(folder)
    (folder / "config.json").write_text(json.dumps(cfg | {"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a text network"):
        TextNetEncoder(folder)
    with pytest.raises(FileNotFoundError, match="no text network"):
        TextNetEncoder(tmp_path / "nowhere")


def test_a_missing_part_of_the_weights_is_refused(bert, tmp_path, monkeypatch):
    import emofuse.features.encoders.text_net as tn

    monkeypatch.setattr(tn, "PART_BYTES", 20_000)  # a tiny network still cut into several parts
    model = _tuned(bert)
    folder = save_text_net(model.backbone, model.head[1], tmp_path / "net", base=f"hf:{bert}", pooling="mean",
                           max_length=8, classes=["a", "b", "c"])
    parts = sorted(folder.glob("model.safetensors.part-*"))
    assert len(parts) >= 3 and all(p.stat().st_size <= 20_000 for p in parts)
    whole = TextNetEncoder(folder).weights_digest()
    parts[1].unlink()
    with pytest.raises(FileNotFoundError, match="part-002"):
        TextNetEncoder(folder)
    # saving again over the folder writes the parts afresh: the same file, the same digest
    save_text_net(model.backbone, model.head[1], folder, base=f"hf:{bert}", pooling="mean", max_length=8,
                  classes=["a", "b", "c"])
    assert TextNetEncoder(folder).weights_digest() == whole
