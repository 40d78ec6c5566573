"""Temperature scaling lowers NLL on over-confident logits; ECE matches a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import (
    expected_calibration_error,
    fit_temperature,
    log_softmax,
    negative_log_likelihood,
    softmax,
)


def _overconfident(n: int = 2000, k: int = 4, seed: int = 0):
    """Logits of a classifier right 70% of the time but ~99% sure: temperature should be > 1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.7, labels, (labels + rng.integers(1, k, n)) % k)
    logits = rng.normal(0, 0.3, (n, k))
    logits[np.arange(n), pred] += 6.0
    return logits, labels


@pytest.mark.parametrize("method", ["lbfgs", "grid"])
def test_temperature_lowers_nll_and_ece(method):
    logits, labels = _overconfident()
    t = fit_temperature(logits, labels, method)
    assert t > 1.5
    assert negative_log_likelihood(logits, labels, t) < negative_log_likelihood(logits, labels, 1.0) - 0.3
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, t), labels)
    assert after < before / 3
    # scaling never changes the predicted class
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_lbfgs_matches_grid_optimum():
    logits, labels = _overconfident(seed=1)
    t_l, t_g = fit_temperature(logits, labels, "lbfgs"), fit_temperature(logits, labels, "grid")
    assert negative_log_likelihood(logits, labels, t_l) <= negative_log_likelihood(logits, labels, t_g) + 1e-9
    assert abs(t_l - t_g) / t_g < 0.05


def test_log_softmax_is_the_log_of_softmax_without_underflow():
    z = np.array([[0.0, 1.0, 2.0], [1000.0, 0.0, -1000.0]])
    np.testing.assert_allclose(np.exp(log_softmax(z, 2.0)), softmax(z, 2.0), atol=1e-12)
    assert np.isfinite(log_softmax(z)).all() and log_softmax(z)[1, 2] == -2000.0  # softmax would give 0 there


def test_ece_hand_example():
    # confidences 0.9 (right), 0.8 (wrong), 0.6 (right), 0.55 (wrong); 2 bins: [0, .5], (.5, 1]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    labels = np.array([0, 0, 0, 0])
    # all four fall in bin 2: accuracy 0.5, mean confidence 0.7125 -> ECE 0.2125
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.2125)
    # 10 bins: (.5,.6]: {0.6 right, 0.55 wrong} |0.5-0.575|; (.7,.8]: {0.8 wrong} |0-0.8|; (.8,.9]: {0.9 right} |1-0.9|
    expected = 0.5 * 0.075 + 0.25 * 0.8 + 0.25 * 0.1
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)


def test_ece_perfect_and_edges():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, [0, 1]) == 0.0
    assert expected_calibration_error(probs, [1, 0]) == pytest.approx(1.0)
    assert expected_calibration_error(np.zeros((0, 3)), []) == 0.0
    assert fit_temperature(np.zeros((0, 3)), []) == 1.0


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match="one class id per example"):
        expected_calibration_error(np.ones((3, 2)) / 2, [0, 1])
    with pytest.raises(ValueError, match="must lie in"):
        fit_temperature(np.zeros((2, 2)), [0, 5])
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_temperature(np.zeros((2, 2)), [0, 1], method="newton")
