"""Late fusion's combine (mean | product of experts), its fit on validation (temperatures, weights
pulled towards equal by cross-validation), and modality dropout in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax

from emofuse.data.dataset import collate
from emofuse.models.late import combine_log_probs, combine_torch, fit_fusion
from emofuse.training.module import drop_modalities
from emofuse.models.build import build_model

C = 4


def _members(n: int, seed: int, strengths=(2.0, 2.0, 0.0), sharpen=(1.0, 1.0, 1.0)):
    """(probs (N, M, C), labels): member m sees the label with logit strength strengths[m]
    (0: pure noise), its own independent noise, then sharpened by sharpen[m] (>1: overconfident)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    out = []
    for s, k in zip(strengths, sharpen):
        logits = s * np.eye(C)[y] + rng.normal(0, 1.0, (n, C))
        out.append(softmax(k * logits, axis=1))
    return np.stack(out, 1), y


def test_numpy_and_torch_combine_agree_and_skip_absent_members():
    rng = np.random.default_rng(0)
    log_p = log_softmax(rng.normal(size=(6, 3, C)), axis=2)
    w = np.array([1.0, 0.5, 2.0])
    present = np.ones((6, 3))
    present[0, 1] = 0
    present[1] = 0  # nothing present: all members, as in the mean's fallback
    for combine in ("mean", "product"):
        ref = combine_log_probs(log_p, w, present, combine)
        got, _ = combine_torch(torch.tensor(log_p), torch.tensor(w), torch.tensor(present), combine)
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)
        np.testing.assert_allclose(np.exp(ref).sum(1), 1.0, atol=1e-10)
    # product with weights 1 is the normalised product; an absent member counts as uniform
    prod = np.exp(log_p[0, 0] + log_p[0, 2])
    np.testing.assert_allclose(np.exp(combine_log_probs(log_p, np.ones(3), present, "product"))[0], prod / prod.sum())
    mean = (np.exp(log_p[0, 0]) + 2 * np.exp(log_p[0, 2])) / 3
    np.testing.assert_allclose(np.exp(combine_log_probs(log_p, w, present, "mean"))[0], mean)


def test_product_beats_mean_on_independent_evidence():
    p, y = _members(3000, 1, strengths=(1.5, 1.5, 1.5))
    nll = {c: -combine_log_probs(np.log(p), np.ones(3), None, c)[np.arange(len(y)), y].mean() for c in ("mean", "product")}
    assert nll["product"] < nll["mean"]


def test_fit_fusion_keeps_equal_weights_for_equal_members_and_drops_noise():
    p, y = _members(400, 2, strengths=(2.0, 2.0, 2.0))
    f = fit_fusion(p, None, y, "product")
    assert np.ptp(f.weights) < 0.35 * f.weights.mean()  # close to equal: nothing tells the members apart
    p, y = _members(800, 3, strengths=(2.0, 2.0, 0.0))
    f = fit_fusion(p, None, y, "product")
    effective = f.weights / f.member_temperatures  # the multiplier of each member's log-probabilities
    assert effective[2] < 0.3 * min(effective[:2])  # the noise member is flattened (its temperature)
    f = fit_fusion(p, None, y, "product", calibrate=False)  # without temperatures the weights must do it
    assert f.weights[2] < 0.3 * min(f.weights[:2])
    assert np.isfinite(f.shrinkage) and set(f.cv_nll) == {0.0, 1.0, 10.0, 100.0, 1000.0, float("inf")}
    f = fit_fusion(p, None, y, "mean", calibrate=False)
    assert abs(f.weights.sum() - 1) < 1e-9 and f.weights[2] < f.weights[0]


def test_fit_fusion_calibrates_an_overconfident_member_and_generalises():
    p, y = _members(600, 4, strengths=(2.0, 2.0, 1.0), sharpen=(4.0, 1.0, 1.0))
    q, yq = _members(3000, 5, strengths=(2.0, 2.0, 1.0), sharpen=(4.0, 1.0, 1.0))  # fresh rows, same members
    fitted = fit_fusion(p, None, y, "product", calibrate=True)
    raw = fit_fusion(p, None, y, "product", calibrate=False, shrinkages=(float("inf"),))  # the plain product
    t = fitted.member_temperatures
    assert t[0] > 1.5 and t[0] > 1.5 * t[1]  # the sharpened member is softened most
    nll = lambda f: -f.log_probs(q)[np.arange(len(yq)), yq].mean()  # noqa: E731
    assert nll(fitted) < nll(raw)
    assert nll(fitted) < min(-np.log(q[np.arange(len(yq)), i, yq]).mean() for i in range(3))


def _batch(n: int, rng) -> dict:
    y = rng.integers(0, C, n)
    items = [{"id": str(i), "label": int(y[i]), "target": np.eye(C, dtype=np.float32)[y[i]],
              "audio": (np.eye(C)[y[i]] * 3 + rng.normal(size=C)).astype(np.float32), "audio_present": True,
              "text": rng.normal(size=5).astype(np.float32), "text_present": bool(i % 5)} for i in range(n)]
    return collate(items)


@pytest.mark.parametrize("combine", ["mean", "product"])
def test_late_model_applies_what_it_fitted_on_validation(combine):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model("late", {"hidden": 16, "combine": combine, "cv_folds": 3}, {"audio": C, "text": 5}, C)
    model.eval()
    val = [_batch(30, rng), _batch(30, rng)]
    info = model.fit_validation(val)
    assert info["combine"] == combine and set(info["member_temperatures"]) == {"audio", "text"}
    assert torch.any(model.member_temperatures != 1) and float(model.fused_temperature) != 1.0
    # the torch forward reproduces the numpy fusion it was fitted as
    from emofuse.models.late import Fusion

    batch = _batch(12, rng)
    with torch.no_grad():
        out = model(batch)
    member = torch.softmax(out["aux_logits"], -1).numpy()
    fusion = Fusion(combine, model.fusion_weights.numpy().astype(np.float64),
                    model.member_temperatures.numpy().astype(np.float64), float(model.fused_temperature), 0.0)
    np.testing.assert_allclose(torch.log_softmax(out["logits"], -1).numpy(),
                               fusion.log_probs(member, out["aux_mask"].float().numpy()), atol=1e-4)


def test_grid_fit_refuses_product():
    model = build_model("late", {"hidden": 16, "combine": "product", "fit": "grid"}, {"audio": C, "text": 5}, C)
    with pytest.raises(ValueError, match="fit: cv"):
        model.eval().fit_validation([_batch(20, np.random.default_rng(0))])


def test_modality_dropout_never_drops_every_input():
    rng = np.random.default_rng(0)
    batch = _batch(400, rng)
    torch.manual_seed(0)
    out = drop_modalities(batch, ["audio", "text"], 0.5)
    keep = torch.stack([out["audio_mask"], out["text_mask"]], 1)
    before = torch.stack([batch["audio_mask"], batch["text_mask"]], 1)
    assert not (keep & ~before).any()  # nothing absent comes back
    assert keep.any(1).all()  # every sample keeps an input
    dropped = (before & ~keep).sum().item() / before.sum().item()
    assert 0.2 < dropped < 0.45  # about p, less where dropping would have left a sample empty
    assert torch.all(out["audio"][~out["audio_mask"]] == 0) and torch.all(out["text"][~out["text_mask"]] == 0)
    assert batch["audio_mask"].all()  # the input batch itself is untouched
    assert drop_modalities(batch, ["audio", "text"], 0.0) is batch
    assert drop_modalities(batch, ["audio"], 0.9) is batch  # one input: nothing to drop


def test_modality_dropout_applies_to_sequence_masks():
    items = [{"id": str(i), "label": 0, "target": np.eye(C, dtype=np.float32)[0],
              "audio": np.ones((3 + i % 2, 2), np.float32), "audio_present": True,
              "text": np.ones(3, np.float32), "text_present": True} for i in range(200)]
    batch = collate(items)
    torch.manual_seed(1)
    out = drop_modalities(batch, ["audio", "text"], 0.5)
    gone = ~out["audio_mask"].any(1)
    assert gone.any() and (out["audio"][gone] == 0).all() and out["text_mask"][gone].all()
