"""MER-HAN tiny-config tests: the unimodal rows (inputs: audio / text) build, give (B, C) logits and
pass gradients to every parameter; frame stacking and packed sequences are exact; padding does not
change an utterance's output; the demo and ablation configs validate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emofuse.config import load_config, validate
from emofuse.data.dataset import collate
from emofuse.models.mer_han import stack_frames
from emofuse.registry import MODELS
from emofuse.training.module import emotion_loss
from emofuse.models.build import build_model

C = 6
REPO = Path(__file__).resolve().parents[2]
TINY = {"hidden": 32, "heads": 2}


def _batch(n=3, keys=("audio", "text"), seed=3, audio_len=(5, 12)):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        it = {"id": f"s{i}", "label": i % C, "target": np.eye(C, dtype=np.float32)[i % C]}
        if "audio" in keys:
            it |= {"audio": rng.normal(size=(int(rng.integers(*audio_len)), 40)).astype(np.float32), "audio_present": True}
        if "text" in keys:
            it |= {"text": rng.normal(size=(int(rng.integers(2, 6)), 16)).astype(np.float32), "text_present": True}
        items.append(it)
    return collate(items)


def _check_gradients(model, batch):
    out = model(batch)
    assert out["logits"].shape == (len(batch["label"]), C)
    emotion_loss(out["logits"], batch["label"], batch["target"], 0.0).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    return out


@pytest.mark.parametrize("inputs", ["audio", "text"])
@pytest.mark.parametrize("ablate", [None, "local_attention", "global_attention"])
def test_one_input_shapes_and_gradients(inputs, ablate):
    torch.manual_seed(0)
    params = TINY | {"inputs": inputs} | ({ablate: False} if ablate else {})
    dims = {inputs: 40 if inputs == "audio" else 16}  # the other modality need not be in the data
    model = build_model("mer_han", params, dims, C)
    out = _check_gradients(model, _batch(keys=(inputs,)))
    assert "weights" not in out  # one modality: no audio-vs-text split to report
    assert model.weight_names == [inputs]
    assert model.audio_to_text is None and model.text_to_audio is None  # nothing to attend across
    assert (model.audio_lstm is None) == (inputs == "text") and (model.text_proj is None) == (inputs == "audio")


def test_one_input_ignores_the_other_modality_in_the_data():
    torch.manual_seed(0)
    both = _batch()
    model = build_model("mer_han", TINY | {"inputs": "audio"}, {"audio": 40, "text": 16}, C).eval()
    noisy = dict(both, text=torch.randn_like(both["text"]) * 100)
    with torch.no_grad():
        assert torch.equal(model(both)["logits"], model(noisy)["logits"])


def test_missing_input_names_the_switch():
    with pytest.raises(ValueError, match="needs input 'text'.*inputs: audio or text"):
        build_model("mer_han", TINY, {"audio": 40}, C)


def test_stacked_frames_and_gradients():
    torch.manual_seed(0)
    model = build_model("mer_han", TINY | {"audio_stack": 4}, {"audio": 40, "text": 16}, C)
    assert model.audio_lstm.input_size == 160
    out = _check_gradients(model, _batch(audio_len=(5, 14)))
    assert out["weights"].shape == (3, 2)
    x = torch.arange(2 * 5 * 2, dtype=torch.float32).view(2, 5, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    s, m = stack_frames(x, mask, 2)  # (2, 3, 4)
    assert s.shape == (2, 3, 4) and torch.equal(s[0, 0], x[0, :2].reshape(-1))
    assert torch.equal(s[0, 2], torch.cat([x[0, 4], torch.zeros(2)]))
    assert m.tolist() == [[True, True, True], [True, True, False]]


@pytest.mark.parametrize("stack", [1, 3])
def test_padding_does_not_change_an_utterance(stack):
    """The BiLSTM reads packed sequences: batched beside a longer clip, a clip gets the logits it gets alone."""
    torch.manual_seed(0)
    model = build_model("mer_han", TINY | {"audio_stack": stack, "dropout": 0.0}, {"audio": 40, "text": 16}, C).eval()
    batch = _batch(n=4, audio_len=(3, 30), seed=5)
    lengths = batch["audio_mask"].sum(1)
    short = int(lengths.argmin())
    alone = {k: (v[short : short + 1] if torch.is_tensor(v) else v[short : short + 1]) for k, v in batch.items()}
    t = int(lengths[short])
    t = -(-t // stack) * stack  # whole stacked steps
    alone["audio"], alone["audio_mask"] = alone["audio"][:, :t], alone["audio_mask"][:, :t]
    with torch.no_grad():
        together = model(batch)["logits"][short]
        by_itself = model(alone)["logits"][0]
    assert torch.allclose(together, by_itself, atol=1e-5)


def test_absent_audio_row_gives_finite_outputs():
    torch.manual_seed(0)
    batch = _batch()
    batch["audio_mask"][1] = False
    batch["audio"][1] = 0
    model = build_model("mer_han", TINY, {"audio": 40, "text": 16}, C)
    out = _check_gradients(model, batch)
    assert torch.isfinite(out["logits"]).all()


def test_demo_config_is_the_papers_setup():
    from emofuse.config import RunConfig

    cfg = load_config(RunConfig, REPO / "configs" / "demo_mer_han.yaml")
    assert cfg.train.optimizer == "adam" and cfg.train.mse_weight == 0
    assert cfg.data.sequence is True and cfg.data.features == {"audio": "mfcc", "text": "minilm"}
    validate(MODELS.get("mer_han").Config, cfg.model.params)


@pytest.mark.parametrize("name", ["demo_mer_han_ablation.yaml", "paired_mer_han_ablation.yaml"])
def test_ablation_configs_validate(name, monkeypatch):
    from emofuse.training.ablation import AblationConfig

    monkeypatch.chdir(REPO)  # base is a path from the repository root
    cfg = load_config(AblationConfig, REPO / "configs" / name)
    rows = ["full", "no-local", "no-cross-modal", "no-global", "audio-only", "text-only"]
    assert list(cfg.variants)[:6] == rows  # the paired table adds rows (eGeMAPS frames, the audio MLP, the old settings)
    for v in cfg.variants:
        run = cfg.variant_config(v)
        if v == "audio-egemaps-mlp":  # the bench's audio model, the reference MER-HAN is measured against
            assert run.model.name == "unimodal" and run.data.sequence is False
            continue
        params = validate(MODELS.get("mer_han").Config, run.model.params)
        assert run.model.name == "mer_han" and run.train.mse_weight == 0  # cross-entropy alone, as the paper
        if params.inputs != "both":  # a unimodal row loads only its own features
            assert list(run.data.features) == [params.inputs]
