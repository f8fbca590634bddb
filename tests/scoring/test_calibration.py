"""Temperature scaling, ECE and the reliability diagram on synthetic probabilities whose calibration is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from emofuse.scoring.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    save_reliability_diagram,
)


def _calibrated(n: int, n_classes: int = 5, seed: int = 0):
    """Probabilities from random logits with labels drawn from those very probabilities: calibrated."""
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(0.0, 2.0, (n, n_classes)), axis=1)
    labels = np.array([rng.choice(n_classes, p=p) for p in probs])
    return probs, labels


def test_temperature_near_one_on_calibrated_probabilities():
    probs, labels = _calibrated(6000)
    assert fit_temperature(probs, labels) == pytest.approx(1.0, abs=0.08)
    assert expected_calibration_error(probs, labels) < 0.03


def test_fitted_temperature_undoes_overconfidence_and_lowers_ece_and_nll():
    probs, labels = _calibrated(4000, seed=1)
    # sharpen by T=1/3: same argmax, overconfident
    over = apply_temperature(probs, 1.0 / 3.0)
    assert np.array_equal(over.argmax(1), probs.argmax(1))
    t = fit_temperature(over, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    fixed = apply_temperature(over, t)
    assert expected_calibration_error(fixed, labels) < 0.5 * expected_calibration_error(over, labels)
    assert negative_log_likelihood(fixed, labels) < negative_log_likelihood(over, labels)


def test_underconfidence_gives_temperature_below_one():
    probs, labels = _calibrated(4000, seed=2)
    assert fit_temperature(apply_temperature(probs, 2.5), labels) < 0.6


def test_ece_by_hand():
    # two samples at confidence 0.9 (one right), two at 0.6 (both right): 0.5*|0.5-0.9| + 0.5*|1-0.6|
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)


def test_temperature_is_bounded_on_separable_data_and_rows_stay_distributions():
    probs = np.array([[0.6, 0.4], [0.3, 0.7]] * 10)
    labels = np.array([0, 1] * 10)
    t = fit_temperature(probs, labels)
    assert 0.04 < t < 0.06  # runs to the lower bound, not to zero
    out = apply_temperature(probs, t)
    assert np.allclose(out.sum(1), 1.0)
    with pytest.raises(ValueError):
        apply_temperature(probs, 0.0)
    with pytest.raises(ValueError):
        fit_temperature(probs, labels[:-1])


def test_reliability_diagram_written(tmp_path):
    probs, labels = _calibrated(300)
    path = tmp_path / "sub" / "reliability.png"
    save_reliability_diagram(probs, labels, path, title="synthetic")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_calibration_reads_a_run_folder(tmp_path):
    import pandas as pd

    from emofuse.evaluation.report import write_calibration

    classes = ["x", "y", "z"]
    for name, seed in (("predictions.csv", 3), ("predictions_val.csv", 4)):
        probs, labels = _calibrated(800, 3, seed)
        over = apply_temperature(probs, 0.4)
        df = pd.DataFrame({"id": [str(i) for i in range(800)], "true": [classes[i] for i in labels],
                           "predicted": [classes[i] for i in over.argmax(1)]})
        for j, c in enumerate(classes):
            df[f"p_{c}"] = over[:, j]
        df.loc[0, "true"] = ""  # an unlabelled row is left out
        df.to_csv(tmp_path / name, index=False)
    cal = write_calibration(tmp_path, classes)
    assert cal["temperature"] > 1.8 and cal["ece_calibrated"] < cal["ece"] and cal["nll_calibrated"] < cal["nll"]
    assert (tmp_path / "reliability.png").is_file()
    assert write_calibration(tmp_path / "missing", classes) == {}
