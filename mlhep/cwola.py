"""How exercise 03's grader measures a CWoLa classifier, as one function (lesson 03).

The grader calls :func:`weak_supervision_check` on fresh events with a random generator seeded in
secret; the exercise calls it on its own events, before the student submits, to show an estimate of
the grade. Both go through the same steps, so the estimate measures what the grade measures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .held_out import checked
from .metrics import max_sic

#: Exercise 03's analysis: signal region [3.3, 3.7) TeV, sidebands [2.9, 3.3) and [3.7, 4.5) TeV.
EDGES_GEV = (2900.0, 3300.0, 3700.0, 4500.0)
#: Its trigger: a leading jet above 1.2 TeV, the same for signal and QCD.
TRIGGER_JET1_PT_GEV = 1200.0


@dataclass(frozen=True)
class WeakSupervisionCheck:
    """Maximum significance improvements on truth-labelled signal-region test events, of the classifier
    trained on the data (QCD with injected signal) and on the control (the same QCD, no signal)."""

    max_sic: float
    control_max_sic: float
    n_test_qcd: int
    n_test_signal: int


def regions_of(mjj) -> np.ndarray:
    """1 in the signal region, 0 in a sideband, -1 outside (m_JJ in GeV)."""
    mjj = np.asarray(mjj, dtype=np.float64)
    sb_low, sr_low, sr_high, sb_high = EDGES_GEV
    in_sr = (mjj >= sr_low) & (mjj < sr_high)
    in_sb = ((mjj >= sb_low) & (mjj < sr_low)) | ((mjj >= sr_high) & (mjj < sb_high))
    return np.where(in_sr, 1, np.where(in_sb, 0, -1))


def weak_supervision_check(
    features_of: Callable[[np.ndarray], Any],
    make_classifier: Callable[[], Any],
    mjj,
    jet1_pt,
    is_signal,
    rng: np.random.Generator,
    signal_to_background: float = 0.05,
    data_fraction: float = 0.75,
    n_folds: int = 5,
    min_background: int = 20,
) -> WeakSupervisionCheck:
    """Train a CWoLa classifier on SR-vs-SB labels, with and without injected signal, and measure both.

    1. Triggered QCD is split at random: ``data_fraction`` of it is the data, the rest tests.
    2. Signal is injected into the data at ``signal_to_background`` in the SR; the rest of the triggered
       signal tests. Each injected event *replaces* a data QCD event of its own region, so the control
       (the QCD alone) has as many events and as many SR and SB labels as the data: only the signal
       tells them apart, and a score that finds the signal without learning it from the labels finds it
       in both trainings.
    3. ``n_folds`` classifiers per training, each on all folds but one; the 2 x ``n_folds`` fits run in an
       order drawn from ``rng``, so a classifier cannot tell the trainings apart by when it is called.
    4. The mean of each training's fold classifiers scores the SR test events, and the maximum
       significance improvement (at least ``min_background`` background events) is measured with truth.

    Args:
        features_of: gives the features (a 2D array) of the events with the given indices.
        make_classifier: returns a new, untrained classifier with ``fit`` and ``predict_proba``.
        mjj, jet1_pt, is_signal: per event, in GeV and the truth.
        rng: every random choice (splits, injected events, folds, orders) comes from it.
    """
    truth = np.asarray(is_signal, dtype=bool)
    regions = regions_of(mjj)
    triggered = np.asarray(jet1_pt, dtype=np.float64) > TRIGGER_JET1_PT_GEV
    qcd = rng.permutation(np.flatnonzero(~truth & triggered))
    signal = rng.permutation(np.flatnonzero(truth & triggered))
    data_qcd, test_qcd = np.split(qcd, [int(data_fraction * len(qcd))])
    sr_efficiency = np.mean(regions[signal] == 1)
    n_injected = int(round(signal_to_background * np.sum(regions[data_qcd] == 1) / sr_efficiency))
    injected = signal[:n_injected]
    injected = injected[regions[injected] >= 0]
    qcd_in_range = data_qcd[regions[data_qcd] >= 0]
    replaced = np.concatenate(
        [
            rng.choice(
                qcd_in_range[regions[qcd_in_range] == region], np.sum(regions[injected] == region), replace=False
            )
            for region in (0, 1)
        ]
    )
    # Shuffled: the position of an event in what the classifier sees must not tell signal from QCD.
    events = rng.permutation(np.concatenate([qcd_in_range, injected]))
    x = checked(features_of(events), "my_features", shape=(len(events), None))
    y = (regions[events] == 1).astype(int)
    fold = rng.permutation(np.arange(len(events)) % n_folds)
    in_training = {"data": ~np.isin(events, replaced), "control": ~truth[events]}
    test_events = np.concatenate([test_qcd, signal[n_injected:]])
    test_events = rng.permutation(test_events[regions[test_events] == 1])
    test_x = checked(features_of(test_events), "my_features", shape=(len(test_events), None))
    fold_scores: dict[str, list] = {"data": [], "control": []}
    for task in rng.permutation(2 * n_folds):
        which, k = ("data", "control")[task // n_folds], task % n_folds
        rows = in_training[which] & (fold != k)
        model = make_classifier().fit(x[rows], y[rows])
        probabilities = checked(
            model.predict_proba(test_x), "predict_proba", shape=(len(test_events), 2), low=0.0, high=1.0
        )
        fold_scores[which].append(probabilities[:, 1])
    test_truth = truth[test_events].astype(int)
    return WeakSupervisionCheck(
        max_sic=max_sic(test_truth, np.mean(fold_scores["data"], axis=0), min_background=min_background),
        control_max_sic=max_sic(
            test_truth, np.mean(fold_scores["control"], axis=0), min_background=min_background
        ),
        n_test_qcd=int(np.sum(test_truth == 0)),
        n_test_signal=int(np.sum(test_truth == 1)),
    )
