"""mlhep.cwola: the steps exercise 03's grader and its estimate share, on a toy with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from mlhep.cwola import regions_of, weak_supervision_check


def toy(n_qcd=30_000, n_signal=4_000, seed=0):
    """A falling m_JJ spectrum of QCD and a resonance at 3.5 TeV whose feature sits at 2 (QCD's at 0)."""
    rng = np.random.default_rng(seed)
    mjj = np.concatenate([2900.0 + rng.exponential(600.0, n_qcd), rng.normal(3500.0, 100.0, n_signal)])
    feature = np.concatenate([rng.normal(0.0, 1.0, n_qcd), rng.normal(2.0, 0.5, n_signal)])
    is_signal = np.r_[np.zeros(n_qcd, bool), np.ones(n_signal, bool)]
    jet1_pt = np.full(len(mjj), 1500.0)
    jet1_pt[rng.random(len(mjj)) < 0.1] = 800.0  # below the trigger: never used
    return mjj, jet1_pt, feature, is_signal


class Recorder:
    """Boosted trees that record, for each fit, whether its training set held signal (column 1 is the
    truth, which the toy's features smuggle in for the test), how many events and SR labels it had."""

    fits: list[tuple[bool, int, int]] = []

    def fit(self, x, y):
        Recorder.fits.append((bool(x[:, 1].any()), len(y), int(y.sum())))
        self.model = HistGradientBoostingClassifier(max_iter=50, min_samples_leaf=200, random_state=0)
        self.model.fit(x[:, :1], y)
        return self

    def predict_proba(self, x):
        return self.model.predict_proba(x[:, :1])


def test_regions_follow_the_exercise_edges():
    assert list(regions_of([2899.0, 2900.0, 3300.0, 3699.0, 3700.0, 4500.0, np.nan])) == [-1, 0, 1, 1, 0, -1, -1]


def test_weak_supervision_learns_from_labels_and_the_control_sees_nothing():
    mjj, jet1_pt, feature, is_signal = toy()
    Recorder.fits = []
    check = weak_supervision_check(
        lambda rows: np.column_stack([feature[rows], is_signal[rows]]),
        Recorder,
        mjj,
        jet1_pt,
        is_signal,
        np.random.default_rng(1),
    )
    # Measured 3.19-3.77 and 1.00-1.11 on four toys: the signal's feature is learned from the SR labels, and
    # without signal there is nothing to learn. (A monotone score of one feature, such as a logistic regression,
    # ranks the events the same way whenever the control's noise gives its slope the data's sign: a control
    # needs a classifier that can learn something else from noise.)
    assert check.max_sic > 2.5 and check.control_max_sic < 1.5, check
    assert check.n_test_signal > 1000 and check.n_test_qcd > 1000
    data_fits = [fit for fit in Recorder.fits if fit[0]]
    control_fits = [fit for fit in Recorder.fits if not fit[0]]
    assert len(data_fits) == len(control_fits) == 5
    # Each injected event replaced a QCD event of its own region: both trainings saw as many events and as
    # many SR labels, so only the signal tells them apart.
    assert sum(f[1] for f in data_fits) == sum(f[1] for f in control_fits)
    assert sum(f[2] for f in data_fits) == sum(f[2] for f in control_fits)


class GuessedScore:
    """Ignores the labels: closeness to the feature value of a signal one guessed."""

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        p = np.exp(-((np.asarray(x)[:, 0] - 2.0) ** 2))
        return np.column_stack([1 - p, p])


def test_a_score_that_ignores_the_labels_finds_the_signal_in_the_control_too():
    mjj, jet1_pt, feature, is_signal = toy()
    check = weak_supervision_check(
        lambda rows: feature[rows, None], GuessedScore, mjj, jet1_pt, is_signal, np.random.default_rng(1)
    )
    # Measured 2.85-3.09 in both trainings on three toys.
    assert check.control_max_sic == pytest.approx(check.max_sic) and check.control_max_sic > 2.0


def test_probabilities_outside_zero_one_are_refused():
    mjj, jet1_pt, feature, is_signal = toy(5_000, 1_000)

    class Overconfident(GuessedScore):
        def predict_proba(self, x):
            return 2 * super().predict_proba(x)

    with pytest.raises(AssertionError, match="predict_proba gave values above 1"):
        weak_supervision_check(
            lambda rows: feature[rows, None], Overconfident, mjj, jet1_pt, is_signal, np.random.default_rng(1)
        )
