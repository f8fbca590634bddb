"""Class-weighted loss weights, and the validation search of late-fusion weights with a prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emofuse.models.late import fit_fusion_weights, fuse_probs
from emofuse.training.module import class_weights, emotion_loss


def test_class_weights():
    y = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(class_weights(y, 3, "balanced").numpy(), [4 / 9, 4 / 3, 1.0], rtol=1e-6)
    np.testing.assert_allclose(class_weights(y, 3, "sqrt").numpy(), np.sqrt([4 / 9, 4 / 3, 1.0]), rtol=1e-6)
    assert class_weights(y, 3, "none") is None
    logits, label = torch.zeros(2, 3), torch.tensor([0, 1])
    w = class_weights(y, 3, "balanced")
    # weighted CE with equal per-sample losses stays the plain mean (PyTorch normalises by the weights)
    assert emotion_loss(logits, label, torch.zeros(2, 3), 0.0, w).item() == pytest.approx(np.log(3), rel=1e-6)


def test_fusion_weights_prior_breaks_ties_and_yields_to_the_data():
    y = np.array([0, 1, 0, 1])
    good = np.eye(2)[y]  # member 0 is always right
    bad = np.eye(2)[1 - y]  # member 1 always wrong
    probs = np.stack([good, bad], 1)  # (N, M, C)
    present = np.ones((4, 2))
    w, score = fit_fusion_weights(probs, present, y, 2, step=0.1)
    assert score == 1.0 and w[0] > w[1]
    # every weighting with member 0 above 0.5 is perfect; the prior picks the one closest to it
    w, _ = fit_fusion_weights(probs, present, y, 2, step=0.1, prior=np.array([0.7, 0.3]))
    np.testing.assert_allclose(w, [0.7, 0.3])
    # a prior on the wrong member loses to the data, unless the tolerance lets it cost that much
    w, score = fit_fusion_weights(probs, present, y, 2, step=0.1, prior=np.array([0.2, 0.8]))
    assert score == 1.0 and w[0] > 0.5
    w, score = fit_fusion_weights(probs, present, y, 2, step=0.1, prior=np.array([0.2, 0.8]), tolerance=1.0)
    np.testing.assert_allclose(w, [0.2, 0.8])
    np.testing.assert_allclose(fuse_probs(np.array([0.5, 0.5]), probs, present), np.full((4, 2), 0.5))
