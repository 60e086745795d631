"""mlhep.metrics: operating points and the significance improvement, on hand-made cases."""

import numpy as np
import pytest

from mlhep.metrics import closure_at_full_statistics, closure_chi2_per_ndf, max_sic, sic_curve, tpr_at_fpr


def test_tpr_at_fpr_takes_the_best_corner_of_the_staircase():
    labels = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    assert tpr_at_fpr(labels, scores, 0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr(labels, scores, 1 / 7) == pytest.approx(1.0)


def test_sic_of_a_perfect_and_of_a_useless_score():
    labels = np.repeat([0, 1], [1000, 100])
    perfect = labels.astype(float)
    # Perfect separation: every cut that keeps >= 20 background events keeps all the signal,
    # so the best one keeps exactly 20 of 1000: SIC = 1 / sqrt(0.02).
    assert max_sic(labels, perfect + np.linspace(0, 0.5, 1100)) == pytest.approx(1 / np.sqrt(0.02))
    useless = np.zeros(1100)  # one threshold: everything or nothing
    tpr, sic = sic_curve(labels, useless)
    assert sic[-1] == pytest.approx(1.0) and max_sic(labels, useless) == pytest.approx(1.0)


def test_the_background_floor_is_respected():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [500, 500])
    scores = np.concatenate([rng.normal(size=500), rng.normal(2.0, 1.0, size=500)])
    tpr, sic = sic_curve(labels, scores, min_background=50)
    # sic = tpr / sqrt(fpr), so fpr = (tpr / sic)^2 must keep at least 50 of the 500 background events
    fpr = (tpr / sic) ** 2
    assert np.all(fpr * 500 >= 50 - 1e-6)
    assert max_sic(labels, scores, min_background=5) >= max_sic(labels, scores, min_background=50)


def test_too_few_events_is_an_error():
    with pytest.raises(ValueError, match="at least 20 background"):
        max_sic(np.array([0] * 10 + [1] * 10), np.arange(20.0))
    with pytest.raises(ValueError, match="need signal"):
        max_sic(np.zeros(100, int), np.arange(100.0))


def test_background_rejection_at_a_signal_efficiency():
    from mlhep.metrics import background_rejection

    # 10 signal scores 1..10, 100 background scores: 0.5 for 96 of them, 3.5, 5.5, 7.5 and 9.5 for four.
    labels = np.r_[np.ones(10), np.zeros(100)]
    background = np.r_[np.full(96, 0.5), 3.5, 5.5, 7.5, 9.5]
    scores = np.r_[np.arange(1, 11), background]
    # eps_S = 0.3 needs the top three signal scores (8, 9, 10): above 7.5, one background (9.5) passes.
    rejection, uncertainty = background_rejection(labels, scores, 0.3)
    assert rejection == 100.0
    assert np.isclose(uncertainty, np.sqrt(0.01 * 0.99 / 100) / 0.01**2)
    # eps_S = 0.5 (scores 6..10): 7.5 and 9.5 pass, eps_B = 0.02.
    assert background_rejection(labels, scores, 0.5)[0] == 50.0
    # A perfect separation selects no background at all.
    assert background_rejection(np.r_[1, 1, 0], np.r_[2.0, 3.0, 1.0], 0.5) == (float("inf"), float("inf"))


def test_quadratic_explained_variance_finds_what_the_latent_encodes():
    from mlhep.metrics import quadratic_explained_variance

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2000, 3))
    inputs = np.column_stack([latent[:, 0] ** 2 - latent[:, 1], latent[:, 1] * latent[:, 2], 3 * latent[:, 2]])
    assert quadratic_explained_variance(latent * 1e-6, inputs) > 1 - 1e-9  # any scale of the latent values
    noise = rng.normal(size=(2000, 4))
    assert abs(quadratic_explained_variance(latent, noise)) < 0.02
    assert quadratic_explained_variance(np.zeros((2000, 3)), inputs) == pytest.approx(0.0, abs=1e-12)


def test_weighted_roc_summary_and_effective_sample_size():
    from sklearn.metrics import roc_auc_score

    from mlhep.metrics import effective_sample_size, roc_summary

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [2000, 500])
    scores = rng.normal(labels, 1.0)
    weights = np.where(labels == 0, rng.exponential(1.0, len(labels)), 1.0)
    summary = roc_summary(labels, scores, sample_weight=weights)
    assert summary["auc"] == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights))
    assert summary["effective_background"] == pytest.approx(effective_sample_size(weights[labels == 0]))
    assert summary["smallest_measurable_fpr"] == pytest.approx(1 / summary["effective_background"])
    # Unweighted: every event counts once.
    assert roc_summary(labels, scores)["effective_background"] == pytest.approx(2000)
    # Exponential weights are worth about half their number of events: (E w)^2 / E w^2 = 1/2.
    assert 800 < summary["effective_background"] < 1200
    assert effective_sample_size(np.ones(7)) == pytest.approx(7) and effective_sample_size([]) == 0.0


def test_closure_chi2_per_ndf_normalizes_and_leaves_out_empty_bins():
    # a = (0.5, 0.5) with variances (2/16, 4/16); the target b = (0.75, 0.25) with (3/16, 1/16); third bin empty
    chi2 = closure_chi2_per_ndf([0.5, 0.5, 1.5], [1.0, 1.0, 2.0], [0.5, 0.5, 0.5, 1.5], bins=[0, 1, 2, 3])
    assert chi2 == pytest.approx(0.25**2 / (5 / 16) + 0.25**2 / (5 / 16))  # ndf = 2 bins - 1
    same = np.random.default_rng(0).normal(size=500)
    assert closure_chi2_per_ndf(same, np.full(500, 3.0), same, np.linspace(-3, 3, 13)) == 0


def test_closure_at_full_statistics_takes_away_what_scattered_weights_hide():
    rng = np.random.default_rng(1)
    source, target = rng.normal(0.0, 1.0, 20_000), rng.normal(0.1, 1.0, 20_000)
    bins = np.linspace(-4, 4, 41)
    unweighted = closure_chi2_per_ndf(source, np.ones(20_000), target, bins)
    assert closure_at_full_statistics(unweighted, np.ones(20_000), 20_000) == pytest.approx(unweighted)
    scattered = rng.lognormal(0.0, 1.5, 20_000)  # know nothing: an effective sample size of about 13%
    raw = closure_chi2_per_ndf(source, scattered, target, bins)
    rescaled = closure_at_full_statistics(raw, scattered, 20_000)
    # Measured with generator seeds 1, 2, 3: unweighted 3.54, 3.07, 3.76; scattered 1.86, 2.50, 2.52 before the
    # rescaling (better than no weights at all), 5.62, 7.85, 8.10 after (worse, as weights that know nothing are).
    assert raw < 0.9 * unweighted and rescaled > unweighted
    with pytest.raises(ValueError, match="positive sum of weights"):
        closure_at_full_statistics(1.0, np.zeros(10), 10)
