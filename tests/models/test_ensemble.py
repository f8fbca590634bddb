"""The ensemble model: members per input, averaged after temperature scaling fitted on validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emofuse.scoring.calibration import apply_temperature, fit_temperature
from emofuse.training.module import model_loss
from emofuse.models.build import build_model

C = 4
DIMS = {"audio:egemaps": 6, "audio:compare": 20, "audio:mfcc": 5}


def _batch(n: int = 8, seed: int = 0, absent: dict[str, list[int]] | None = None) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {k: torch.randn(n, d, generator=g) for k, d in DIMS.items()}
    for k in DIMS:
        mask = torch.ones(n, dtype=torch.bool)
        mask[(absent or {}).get(k, [])] = False
        batch[f"{k}_mask"] = mask
    batch["label"] = torch.arange(n) % C
    batch["target"] = torch.eye(C)[batch["label"]]
    return batch


def test_members_are_averaged_and_all_of_them_learn():
    model = build_model("ensemble", {"hidden": 16, "linear": ["compare"]}, DIMS, C)
    assert isinstance(model.members["audio:compare"][-1], torch.nn.Linear) and len(model.members["audio:compare"]) == 2
    assert len(model.members["audio:egemaps"]) == 4  # an MLP
    batch = _batch()
    out = model(batch)
    assert out["logits"].shape == (8, C) and out["aux_logits"].shape == (8, 3, C)
    np.testing.assert_allclose(out["logits"].exp().sum(-1).detach(), 1.0, atol=1e-5)  # log of a distribution
    model_loss(out, batch, mse_weight=0.0).backward()
    for name, p in model.named_parameters():
        if name.startswith("pool."):  # attention pooling is for sequence inputs only
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.eval()
    with torch.no_grad():  # untrained temperatures are 1: the fused prediction is the plain mean
        out = model(batch)
        mean = torch.softmax(out["aux_logits"], -1).mean(1)
    torch.testing.assert_close(out["logits"].exp(), mean, atol=1e-5, rtol=1e-5)


def test_an_absent_input_leaves_the_average():
    model = build_model("ensemble", {"hidden": 16}, DIMS, C).eval()
    batch = _batch(absent={"audio:mfcc": [0, 1]})
    with torch.no_grad():
        out = model(batch)
        member = torch.softmax(out["aux_logits"], -1)  # (B, M, C); modalities sorted: compare, egemaps, mfcc
    torch.testing.assert_close(out["logits"][0].exp(), member[0, :2].mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["logits"][2].exp(), member[2].mean(0), atol=1e-5, rtol=1e-5)
    assert out["weights"][0].tolist() == pytest.approx([0.5, 0.5, 0.0])


def test_temperatures_are_fitted_on_validation_per_member():
    torch.manual_seed(0)
    model = build_model("ensemble", {"hidden": 16}, DIMS, C).eval()
    val = [_batch(64, seed=s) for s in (1, 2)]
    k = model.modalities.index("audio:compare")
    rng = np.random.default_rng(0)
    with torch.no_grad():  # labels that agree with the compare member 70% of the time
        for b in val:
            agree = model(b)["aux_logits"][:, k].argmax(-1)
            noise = torch.as_tensor(rng.integers(0, C, len(agree)))
            b["label"] = torch.where(torch.as_tensor(rng.random(len(agree)) < 0.7), agree, noise)
    t1 = model.fit_validation(val)["temperatures"]
    with torch.no_grad():  # the same member, 30x over-confident
        model.members["audio:compare"][-1].weight.mul_(30.0)
        model.members["audio:compare"][-1].bias.mul_(30.0)
    info = model.fit_validation(val)
    temps = info["temperatures"]
    assert set(temps) == set(DIMS)
    assert temps["audio:compare"] == pytest.approx(30 * t1["audio:compare"], rel=0.02)  # scaling undone
    assert temps["audio:egemaps"] == pytest.approx(t1["audio:egemaps"], rel=1e-6)  # others untouched
    # each temperature is calibration.fit_temperature on that member's validation probabilities
    with torch.no_grad():
        outs = [model(b) for b in val]
    probs = torch.cat([torch.softmax(o["aux_logits"], -1) for o in outs]).numpy()
    labels = torch.cat([b["label"] for b in val]).numpy()
    assert temps["audio:compare"] == pytest.approx(fit_temperature(probs[:, k], labels), rel=1e-6)
    # and the fused prediction averages the calibrated members, softmax(logits / T) (apply_temperature
    # works from probabilities clipped at 1e-12, which the 30x member's smallest ones fall below)
    logits = torch.cat([o["aux_logits"] for o in outs])
    t = torch.tensor([temps[name] for name in model.modalities])
    mean = torch.softmax(logits / t[None, :, None], -1).mean(1).numpy()
    # ... and a last temperature on that average (the members' own temperatures leave it under-confident)
    assert info["fused_temperature"] == pytest.approx(fit_temperature(mean, labels), rel=1e-6)
    expect = apply_temperature(mean, info["fused_temperature"])
    j = model.modalities.index("audio:egemaps")
    np.testing.assert_allclose(apply_temperature(probs[:, j], temps["audio:egemaps"]),
                               torch.softmax(logits[:, j] / temps["audio:egemaps"], -1).numpy(), atol=1e-5)
    fused = torch.softmax(torch.cat([o["logits"] for o in outs]), -1).numpy()
    np.testing.assert_allclose(fused, expect, atol=1e-5)
    np.testing.assert_array_equal(fused.argmax(1), mean.argmax(1))  # the last temperature keeps the decisions
    assert all(0 <= info[k] <= 1 for k in ("val_ece", "val_ece_uncalibrated", "val_ece_members_calibrated"))


def test_calibration_off_and_bad_names():
    model = build_model("ensemble", {"hidden": 16, "calibrate": False}, DIMS, C).eval()
    assert model.fit_validation([_batch()]) == {} and model.temperatures.tolist() == [1.0, 1.0, 1.0]
    assert model.fused_temperature.item() == 1.0
    with pytest.raises(ValueError, match="not inputs"):
        build_model("ensemble", {"linear": ["opensmile"]}, DIMS, C)
