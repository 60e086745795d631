"""mlhep.coverage: the weighted trigger threshold and the pseudo-experiments of exercise 01's stretch task."""

from __future__ import annotations

import numpy as np
import pytest

from mlhep.coverage import signal_efficiency_at, uncertainty_calibration, weighted_threshold


def test_threshold_counts_weight_strictly_above():
    scores, weights = np.array([1.0, 2.0, 3.0, 4.0]), np.array([7.0, 1.0, 1.0, 1.0])
    assert weighted_threshold(scores, weights, 0.3) == 1.0  # 3/10 of the weight above 1
    assert weighted_threshold(scores, weights, 0.25) == 2.0
    assert weighted_threshold(scores, np.ones(4), 0.3) == 3.0  # unweighted: one event of four may pass
    tied = np.array([1.0, 2.0, 3.0, 4.0, 4.0])
    assert weighted_threshold(tied, np.array([1.0, 5, 1, 1, 2]), 0.2) == 4.0  # the tied 4s are not above 4
    assert signal_efficiency_at(scores, weights, np.array([0.5, 1.5, 2.5, 3.5]), 0.3) == 0.75


def toy_pool(seed=0):
    rng = np.random.default_rng(seed)
    background = rng.exponential(30.0, 4000)
    weights = rng.lognormal(0.0, 1.0, 4000)  # an effective sample size of about 40%, as cms_ad's QCD
    return background, weights, rng.exponential(60.0, 1000)


def bootstrap(background, weights, signal, target_fpr):
    rng = np.random.default_rng(0)
    replicas = []
    for _ in range(100):
        rows, signal_rows = (
            rng.integers(0, len(background), len(background)),
            rng.integers(0, len(signal), len(signal)),
        )
        replicas.append(signal_efficiency_at(background[rows], weights[rows], signal[signal_rows], target_fpr))
    return signal_efficiency_at(background, weights, signal, target_fpr), np.std(replicas, ddof=1)


def binomial(background, weights, signal, target_fpr):
    efficiency = signal_efficiency_at(background, weights, signal, target_fpr)
    return efficiency, np.sqrt(efficiency * (1 - efficiency) / len(signal))


def test_a_bootstrap_is_calibrated_and_the_binomial_of_the_signal_alone_is_not():
    pool = toy_pool()
    groups = ((250, 250, 0.1), (2000, 2000, 0.05))
    good = uncertainty_calibration(bootstrap, *pool, groups, 60, np.random.default_rng(1))
    bad = uncertainty_calibration(binomial, *pool, groups, 60, np.random.default_rng(1))
    # Measured on three toy pools: the bootstrap 0.86-1.13, the binomial 0.47-0.67 (it leaves out the threshold's
    # uncertainty).
    assert all(0.75 <= group.uncertainty_ratio <= 1.35 and group.bias_in_spreads < 0.5 for group in good), good
    assert all(group.uncertainty_ratio < 0.75 for group in bad), bad


def test_answers_are_checked():
    pool = toy_pool()
    with pytest.raises(AssertionError, match="efficiency_with_uncertainty must give an array of shape"):
        uncertainty_calibration(lambda *args: 0.5, *pool, ((100, 100, 0.1),), 3, np.random.default_rng(0))
    with pytest.raises(AssertionError, match="not finite"):
        uncertainty_calibration(
            lambda *args: (0.5, np.nan), *pool, ((100, 100, 0.1),), 3, np.random.default_rng(0)
        )
