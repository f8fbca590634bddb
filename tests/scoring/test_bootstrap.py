"""Bootstrap intervals and multi-label metrics against scikit-learn on fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from emofuse.scoring import metrics as M


def _counts_scores(t, p):
    w = np.ones((1, len(t)))
    return M.scores_from_counts(w @ (t * p), w @ ((1 - t) * p), w @ (t * (1 - p)), w @ t,
                                 w @ (t == p).all(1).astype(float), w.sum(1))


def test_vectorised_scores_equal_sklearn_single_and_multi_label():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 5, 300))
    p[p == 4] = 3  # a class never predicted
    eye = np.eye(6)  # and a sixth class that never occurs
    fast = _counts_scores(eye[y], eye[p])
    ref = M.classification_metrics(y, p, 6)
    for k in M.METRIC_NAMES:
        assert fast[k][0] == pytest.approx(ref[k], abs=1e-12), k
    yt, yp = rng.random((200, 6)) < 0.3, rng.random((200, 6)) < 0.3
    yt[:, 5] = False  # a label with no support is left out of the means, as sklearn does with labels=
    fast = _counts_scores(yt.astype(float), yp.astype(float))
    ref = M.multilabel_metrics(yt, yp)
    for k in M.METRIC_NAMES:
        assert fast[k][0] == pytest.approx(ref[k], abs=1e-12), k
    assert ref["macro_f1"] == pytest.approx(f1_score(yt, yp, labels=range(5), average="macro"))
    assert ref["uar"] == pytest.approx(recall_score(yt, yp, labels=range(5), average="macro"))


def test_bootstrap_is_seeded_and_brackets_the_point():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 500)
    p = np.where(rng.random(500) < 0.7, y, rng.integers(0, 4, 500))
    a = M.bootstrap_intervals(y, p, 4, n_resamples=300, seed=3)
    assert a == M.bootstrap_intervals(y, p, 4, n_resamples=300, seed=3)
    assert a != M.bootstrap_intervals(y, p, 4, n_resamples=300, seed=4)
    point = M.classification_metrics(y, p, 4)
    for k in M.METRIC_NAMES:
        lo, hi = a[k]
        assert lo < point[k] < hi and hi - lo < 0.15
    assert M.bootstrap_intervals(y, y, 4, n_resamples=50)["accuracy"] == [1.0, 1.0]
