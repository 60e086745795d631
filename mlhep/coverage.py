"""Does a quoted uncertainty match the actual error? Pseudo-experiments for exercise 01's stretch task.

A student's function measures a trigger's signal efficiency on a weighted background and a signal
sample and quotes its statistical uncertainty. :func:`uncertainty_calibration` draws pseudo-experiments
from a pool of events (with replacement, so the pool is the whole population and its efficiency the
truth), calls the function on each and looks at the pulls (estimate - truth) / quoted uncertainty.
The grader calls it on fresh events; the exercise on its own events, as an estimate of the grade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .held_out import checked


@dataclass(frozen=True)
class Calibration:
    """How quoted uncertainties compare with the actual errors over pseudo-experiments.

    The pulls are (estimate - truth) / sigma. Their standard deviation is 1 when each quoted uncertainty
    is right, above 1 when they are too small, below 1 when too large. An uncertainty must be right for
    each sample, not on average over samples of many sizes, so it is measured in each quarter of the
    pseudo-experiments, from the smallest to the largest (by their number of events): ``pull_widths``.
    ``mean_pull`` is 0 for unbiased estimates.
    """

    n_experiments: int
    pull_widths: tuple[float, ...]
    mean_pull: float

    @property
    def worst_pull_width(self) -> float:
        """The quarter's pull width farthest from 1 (by ratio)."""
        return max(self.pull_widths, key=lambda width: abs(np.log(width)) if 0 < width < np.inf else np.inf)


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
    n_experiments: int,
    rng: np.random.Generator,
    sizes: tuple[int, int] = (100, 20_000),
    target_fprs: tuple[float, float] = (0.04, 0.12),
) -> Calibration:
    """``n_experiments`` pseudo-experiments, each with its own numbers of background and signal events (the
    background's log-uniform in ``sizes``, the signal's within a factor 2 of it; drawn with replacement from
    the pool) and its own ``target_fpr`` (uniform in
    ``target_fprs``), measured by
    ``measure(background_scores, background_weights, signal_scores, target_fpr) -> (efficiency, sigma)``.

    Every pseudo-experiment has a different statistical uncertainty, so no fixed number, nor a table of
    the sizes, can stand in for a sigma measured on each sample.
    """
    background_scores = np.asarray(background_scores, dtype=np.float64)
    background_weights = np.asarray(background_weights, dtype=np.float64)
    signal_scores = np.asarray(signal_scores, dtype=np.float64)
    pulls, sizes_drawn = [], []
    for _ in range(n_experiments):
        # Log-uniform sizes, the signal's within a factor 2 of the background's: the uncertainty changes
        # by more than tenfold over the pseudo-experiments.
        n_background = int(np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1]))))
        n_signal = max(int(n_background * np.exp(rng.uniform(-np.log(2), np.log(2)))), 2)
        target_fpr = float(rng.uniform(target_fprs[0], target_fprs[1]))
        rows = rng.integers(0, len(background_scores), n_background)
        signal_rows = rng.integers(0, len(signal_scores), n_signal)
        answer = measure(background_scores[rows], background_weights[rows], signal_scores[signal_rows], target_fpr)
        efficiency, sigma = checked(answer, "efficiency_with_uncertainty", shape=(2,), low=0.0)
        truth = signal_efficiency_at(background_scores, background_weights, signal_scores, target_fpr)
        if not sigma > 0:  # no uncertainty where there is one: an infinitely wrong pull
            return Calibration(n_experiments, (float("inf"),) * 4, float("inf"))
        pulls.append((efficiency - truth) / sigma)
        sizes_drawn.append(n_background + n_signal)
    pulls_array = np.array(pulls)
    quarters = np.array_split(pulls_array[np.argsort(sizes_drawn, kind="stable")], 4)
    return Calibration(
        n_experiments, tuple(float(np.std(quarter, ddof=1)) for quarter in quarters), float(np.mean(pulls_array))
    )
