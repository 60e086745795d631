"""Does a quoted uncertainty match the actual spread? Pseudo-experiments for exercise 01's stretch task.

A student's function measures a trigger's signal efficiency on a weighted background and a signal
sample and quotes its statistical uncertainty. :func:`uncertainty_calibration` draws pseudo-experiments
from a pool of events (with replacement, so the pool is the whole population and its efficiency the
truth), calls the function on each and compares the median quoted uncertainty with the spread of the
estimates. The grader calls it on fresh events; the exercise on its own, as an estimate of the grade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .held_out import checked


@dataclass(frozen=True)
class Calibration:
    """One group of pseudo-experiments: the median quoted uncertainty over the actual spread of the
    estimates (1 when the uncertainty is right), and the mean estimate's distance from the truth in
    units of that spread."""

    n_background: int
    n_signal: int
    target_fpr: float
    uncertainty_ratio: float
    bias_in_spreads: float


def weighted_threshold(background_scores, background_weights, target_fpr: float) -> float:
    """The lowest background score t whose background above it (score > t) carries at most ``target_fpr``
    of the background's total weight."""
    scores = np.asarray(background_scores, dtype=np.float64)
    weights = np.asarray(background_weights, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    ordered, ordered_weights = scores[order], weights[order]
    weight_before = np.concatenate([[0.0], np.cumsum(ordered_weights)[:-1]]) / weights.sum()
    # With tied scores, the weight strictly above a score is the weight before its first occurrence.
    strictly_above = weight_before[np.searchsorted(-ordered, -ordered, side="left")]
    return float(ordered[strictly_above <= target_fpr * (1 + 1e-12)].min())


def signal_efficiency_at(background_scores, background_weights, signal_scores, target_fpr: float) -> float:
    """Fraction of signal events above :func:`weighted_threshold`."""
    threshold = weighted_threshold(background_scores, background_weights, target_fpr)
    return float(np.mean(np.asarray(signal_scores) > threshold))


def uncertainty_calibration(
    measure: Callable[..., Any],
    background_scores,
    background_weights,
    signal_scores,
    groups: tuple[tuple[int, int, float], ...],
    n_experiments: int,
    rng: np.random.Generator,
) -> list[Calibration]:
    """For each group (n_background, n_signal, target_fpr), ``n_experiments`` pseudo-experiments of that
    many events drawn with replacement from the pool, each measured by
    ``measure(background_scores, background_weights, signal_scores, target_fpr) -> (efficiency, sigma)``.
    """
    background_scores = np.asarray(background_scores, dtype=np.float64)
    background_weights = np.asarray(background_weights, dtype=np.float64)
    signal_scores = np.asarray(signal_scores, dtype=np.float64)
    results = []
    for n_background, n_signal, target_fpr in groups:
        truth = signal_efficiency_at(background_scores, background_weights, signal_scores, target_fpr)
        measured = []
        for _ in range(n_experiments):
            rows = rng.integers(0, len(background_scores), n_background)
            signal_rows = rng.integers(0, len(signal_scores), n_signal)
            answer = measure(
                background_scores[rows], background_weights[rows], signal_scores[signal_rows], target_fpr
            )
            measured.append(checked(answer, "efficiency_with_uncertainty", shape=(2,), low=0.0))
        efficiency, sigma = np.array(measured).T
        spread = float(np.std(efficiency, ddof=1))
        results.append(
            Calibration(
                n_background,
                n_signal,
                target_fpr,
                uncertainty_ratio=float(np.median(sigma) / spread) if spread > 0 else float("inf"),
                bias_in_spreads=float(abs(efficiency.mean() - truth) / spread) if spread > 0 else float("inf"),
            )
        )
    return results
