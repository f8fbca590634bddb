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


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 2e-3), ("int8", 2e-2)])
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
    if dtype == "int8":  # the linear layers' weights as int8 with float16 scales per group; the rest float16
        q = "encoder.layer.0.attention.self.query.weight"
        assert stored[q].dtype == torch.int8 and stored[q + ".qscale"].dtype == torch.float16
        assert stored["embeddings.position_embeddings.weight"].dtype == torch.float16
        assert all(v.dtype in (torch.int8, torch.float16) for v in stored.values() if v.dtype != torch.int64)
    else:
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


def test_a_trained_embedding_table_is_stored_as_the_rows_it_moved(bert, tmp_path):
    """AdamW with weight decay on a trained table: the rows of the tokens read move, every other row only
    shrinks. The moved rows are stored as int8 changes (the shrink is not), and the rebuilt encoder gives
    the fine-tuned model's probabilities."""
    torch.manual_seed(0)
    model = build_model("finetune_text", {"encoder": f"hf:{bert}", "max_length": 8}, {"text": 0}, C)
    table = model.backbone.get_input_embeddings().weight
    base = table.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.01)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model({"text": TEXTS[:2]})["logits"].logsumexp(-1).mean().backward()
        opt.step()
    model.eval()
    read = set(model.tokenizer(TEXTS[:2])["input_ids"][0]) | set(model.tokenizer(TEXTS[:2])["input_ids"][1])
    shrunk = [i for i in range(len(base)) if i not in read]
    assert not torch.equal(table[shrunk], base[shrunk])  # weight decay moved every row a little
    folder = save_text_net(model.backbone, model.head[1], tmp_path / "net", base=f"hf:{bert}", pooling="mean",
                           max_length=8, classes=["a", "b", "c"], dtype="float32")
    from safetensors.torch import load

    from emofuse.features.encoders.text_net import weights_bytes

    stored = load(weights_bytes(folder))
    assert set(stored["moved.rows"].tolist()) == read and stored["moved.delta"].dtype == torch.int8
    enc = TextNetEncoder(folder)
    assert enc.moved_rows == len(read)
    rebuilt = enc.backbone.get_input_embeddings().weight.detach()
    rows = sorted(read)
    step = (table[rows] - base[rows]).abs().amax(1, keepdim=True) / 254
    assert (rebuilt[rows] - table[rows].detach()).abs().le(step + 1e-7).all()
    assert torch.equal(rebuilt[shrunk], base[shrunk])
    with torch.no_grad():
        want = torch.softmax(model({"text": TEXTS})["logits"], -1).numpy()
    got = np.stack([g.vector[:C] for g in enc.encode(TEXTS)])
    assert np.allclose(got, want, atol=1e-4)
    # a frozen table's network stores no rows
    frozen = TextNetEncoder(save_text_net(_tuned(bert).backbone, _tuned(bert).head[1], tmp_path / "frozen",
                                          base=f"hf:{bert}", pooling="mean", max_length=8, classes=["a", "b", "c"]))
    assert frozen.moved_rows == 0


def test_refuses_a_resized_embedding_table_another_base_and_foreign_weights(bert, tmp_path):
    model = build_model("finetune_text", {"encoder": f"hf:{bert}"}, {"text": 0}, C)
    model.backbone.resize_token_embeddings(model.backbone.get_input_embeddings().weight.shape[0] + 2)
    with pytest.raises(ValueError, match="resized vocabulary"):
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


def test_int8_groups_keep_each_weight_within_half_a_step():
    from emofuse.features.encoders.text_net import dequantise, quantise

    w = torch.randn(6, 128) * torch.logspace(-2, 1, 128)  # groups of very different ranges
    q, scale = quantise(w)
    assert q.dtype == torch.int8 and scale.shape == (6, 2)
    step = scale.float().repeat_interleave(64, 1)
    assert ((dequantise(q, scale) - w).abs() <= step / 2 + 1e-6).all()
    q, scale = quantise(torch.randn(3, 10))  # 10 inputs: one group per row
    assert scale.shape == (3, 1)
    w[0, :64] = 0  # an all-zero group stays zeros
    q, scale = quantise(w)
    assert torch.equal(dequantise(q, scale)[0, :64], torch.zeros(64)) and (scale.float() > 0).all()


def test_several_networks_average_their_probabilities_and_keep_each_pooled_state(bert, tmp_path):
    from emofuse.features.encoders.text_net import shipped_text_net

    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model("finetune_text", {"encoder": f"hf:{bert}", "freeze_input_embeddings": True,
                                              "max_length": 8}, {"text": 0}, C)
        with torch.no_grad():
            model.head[1].weight.normal_(0, 1.0)  # two networks that answer differently
        nets.append((model.eval(), save_text_net(model.backbone, model.head[1], tmp_path / f"net{seed}",
                                                 base=f"hf:{bert}", pooling="mean", max_length=8,
                                                 classes=["a", "b", "c"], dtype="float32")))
    both = shipped_text_net(folder="+".join(str(f) for _, f in nets))
    assert both.dim == C + 2 * 32 and both.config()["networks"] == 2
    with torch.no_grad():
        want = np.mean([torch.softmax(m({"text": TEXTS})["logits"], -1).numpy() for m, _ in nets], 0)
        pooled = [m.encode({"text": TEXTS}).numpy() for m, _ in nets]
    got = np.stack([g.vector for g in both.encode(TEXTS)])
    assert np.allclose(got[:, :C], want, atol=1e-5)
    assert np.allclose(got[:, C:C + 32], pooled[0], atol=1e-4) and np.allclose(got[:, C + 32:], pooled[1], atol=1e-4)
    one = TextNetEncoder(nets[0][1])
    assert "networks" not in one.config() and one.weights_digest() != both.weights_digest()
    other = json.loads((nets[1][1] / "config.json").read_text())
    (nets[1][1] / "config.json").write_text(json.dumps(other | {"classes": ["x", "y", "z"]}))
    with pytest.raises(ValueError, match="answer the same question"):
        TextNetEncoder([nets[0][1], nets[1][1]])

