"""Classifier and anomaly-detector metrics shared by the lessons (introduced in lesson 01).

Convention: an event is *selected* when its score is strictly above the threshold, and the
operating point at a target false-positive rate is the best one whose background efficiency
does not exceed the target (the same staircase as ``sklearn.metrics.roc_curve``).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

#: LHC bunch-crossing rate seen by the first trigger level, in Hz.
COLLISION_RATE_HZ = 40e6


def effective_sample_size(weights) -> float:
    """Kish's effective number of events of a weighted sample, (sum w)^2 / sum w^2 (introduced in lesson 00).

    N events of weight 1 give N; a few events that carry most of the weight give few. Statistical
    uncertainties of weighted histograms and efficiencies scale like 1 / sqrt(this number).
    """
    weights = np.asarray(weights, dtype=np.float64)
    return float(weights.sum() ** 2 / np.sum(weights**2)) if weights.size else 0.0


def closure_chi2_per_ndf(values, weights, target_values, bins) -> float:
    """chi2/ndf of a weighted sample against an unweighted target, both histogrammed in ``bins`` and
    normalized to unit sum (introduced in lesson 02).

    Each bin's variance is sum w^2 / (sum w)^2; bins where both samples are empty are left out, and the
    normalization takes one degree of freedom. About 1 when the weighted sample and the target agree within
    statistics; where they differ, chi2/ndf - 1 grows in proportion to the number of events.
    """

    def normalized(sample, sample_weights):
        counts, _ = np.histogram(sample, bins=bins, weights=sample_weights)
        variances, _ = np.histogram(sample, bins=bins, weights=sample_weights**2)
        return counts / sample_weights.sum(), variances / sample_weights.sum() ** 2

    values, target_values = np.asarray(values, np.float64), np.asarray(target_values, np.float64)
    a, var_a = normalized(values, np.asarray(weights, np.float64))
    b, var_b = normalized(target_values, np.ones(len(target_values)))
    used = (var_a + var_b) > 0
    return float(np.sum((a - b)[used] ** 2 / (var_a + var_b)[used]) / max(int(used.sum()) - 1, 1))


def closure_at_full_statistics(chi2_per_ndf: float, weights, n_target: int) -> float:
    """A closure chi2/ndf (:func:`closure_chi2_per_ndf`) rescaled to the statistics the weighted sample had
    before its weights (introduced in lesson 02).

    Where the weighted sample and the target differ, chi2/ndf - 1 grows like 1 / (1/N_eff + 1/N_target):
    weights that scatter, and so shrink the effective sample size N_eff, make any difference look less
    significant. Random weights that know nothing would pass a plain chi2 test that way. Rescaled to the
    N events of the sample unweighted, chi2/ndf - 1 measures the difference itself; weights that
    keep N_eff near N change it little.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if len(weights) == 0 or not weights.sum() > 0 or n_target <= 0:
        raise ValueError("need weighted events with a positive sum of weights, and target events")
    n, n_effective = len(weights), effective_sample_size(weights)
    return float(1.0 + (chi2_per_ndf - 1.0) * (1.0 / n_effective + 1.0 / n_target) / (1.0 / n + 1.0 / n_target))


def tpr_at_fpr(labels, scores, target_fpr: float, sample_weight=None) -> float:
    """Signal efficiency at the best operating point with background efficiency <= target_fpr
    (efficiencies weighted by ``sample_weight`` when given)."""
    # drop_intermediate=False: the default drops corner points of the staircase that can be
    # the best operating point at a given rate.
    fpr, tpr, _ = roc_curve(
        np.asarray(labels), np.asarray(scores), sample_weight=sample_weight, drop_intermediate=False
    )
    return float(tpr[fpr <= target_fpr].max())


def roc_summary(labels, scores, target_fprs=(1e-3, 1e-4), sample_weight=None) -> dict:
    """AUC and the signal efficiency at each target false-positive rate.

    With ``sample_weight`` every figure is weighted (a generator-level bias undone), and the
    statistics are those of the weighted sample: ``effective_background`` is the background's
    effective number of events (:func:`effective_sample_size`), and ``smallest_measurable_fpr``
    the false-positive rate of one effective event, so that a figure at a smaller rate is not
    over-read.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    weights = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    effective_background = effective_sample_size(weights[labels == 0])
    summary = {
        "auc": float(roc_auc_score(labels, scores, sample_weight=sample_weight)),
        "effective_background": effective_background,
        "smallest_measurable_fpr": 1.0 / max(1.0, effective_background),
    }
    for target in target_fprs:
        summary[f"tpr_at_fpr_{target:.0e}"] = tpr_at_fpr(labels, scores, target, sample_weight)
    return summary


def trigger_rate_hz(fpr: float) -> float:
    """Background rate a trigger with this false-positive rate passes at 40 MHz.

    Only for an FPR measured on *zero-bias* crossings (every bunch crossing, as the first
    trigger level sees them). An FPR measured on a sample that was already selected (a hard
    QCD sample with a generator-level pT-hat cut, say) is a fraction of that selection, not of
    the 40 MHz.
    """
    return fpr * COLLISION_RATE_HZ


def fpr_for_rate(rate_hz: float) -> float:
    """False-positive rate on zero-bias crossings that fits a trigger rate budget (1 kHz -> 2.5e-5);
    see :func:`trigger_rate_hz` for what the FPR must be measured on."""
    return rate_hz / COLLISION_RATE_HZ


def sic_curve(labels, scores, min_background: int = 20):
    """Significance improvement TPR / sqrt(FPR) along the ROC curve (introduced in lesson 03).

    A cut that keeps signal efficiency TPR and background efficiency FPR multiplies the
    significance s/sqrt(b) by TPR/sqrt(FPR). Operating points that keep fewer than
    ``min_background`` background events are dropped: there the FPR, and the SIC with it, is
    a statistical fluctuation (20 events: 22% relative uncertainty on the FPR).

    Returns (tpr, sic) arrays, ordered by increasing FPR.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    n_background = int((labels == 0).sum())
    if n_background < min_background or (labels == 1).sum() == 0:
        raise ValueError(
            f"need signal and at least {min_background} background events, got "
            f"{int((labels == 1).sum())} and {n_background}"
        )
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    keep = fpr * n_background >= min_background
    return tpr[keep], tpr[keep] / np.sqrt(fpr[keep])


def max_sic(labels, scores, min_background: int = 20) -> float:
    """The largest significance improvement of any cut on ``scores`` (see :func:`sic_curve`)."""
    return float(sic_curve(labels, scores, min_background)[1].max())


def background_rejection(labels, scores, signal_efficiency: float) -> tuple[float, float]:
    """Background rejection 1/eps_B at signal efficiency ``signal_efficiency`` (introduced in lesson 04),
    with its binomial statistical uncertainty.

    The operating point is the first one along the ROC staircase whose signal efficiency reaches the
    target; eps_B is the fraction of background selected there. A rejection from k selected
    background events has a relative uncertainty of about 1/sqrt(k): with 5 000 background events a
    rejection of 500 rests on 10 of them (32%). No background selected gives (inf, inf).

    Returns (rejection, uncertainty).
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    n_background = int((labels == 0).sum())
    if n_background == 0 or (labels == 1).sum() == 0:
        raise ValueError("need signal and background events")
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    background_efficiency = float(fpr[np.argmax(tpr >= signal_efficiency)])
    selected = background_efficiency * n_background
    if selected == 0:
        return float("inf"), float("inf")
    # Binomial: sigma(eps_B) = sqrt(eps_B (1 - eps_B) / N); sigma(1/eps_B) = sigma(eps_B) / eps_B^2.
    sigma = np.sqrt(background_efficiency * (1 - background_efficiency) / n_background)
    return 1.0 / background_efficiency, float(sigma / background_efficiency**2)


def quadratic_explained_variance(latent, inputs) -> float:
    """How much of the inputs' variance a quadratic function of the latent values explains (lesson 06).

    Fits ``inputs`` by least squares on 1, each latent value, their squares and pairwise products, and returns
    1 - (residual sum of squares) / (total sum of squares), summed over all input columns. An encoder's latent
    space that describes the events scores high; one number such as H_T scores low.

    Args:
        latent: array (n_events, n_latent).
        inputs: array (n_events, n_inputs).

    Returns:
        The explained fraction, at most 1.
    """
    latent = np.asarray(latent, dtype=np.float64).reshape(len(latent), -1)
    inputs = np.asarray(inputs, dtype=np.float64)
    scale = np.maximum(latent.std(axis=0), 1e-12)  # numerically stable least squares for any latent range
    z = (latent - latent.mean(axis=0)) / scale
    pairs = [z[:, i] * z[:, j] for i in range(z.shape[1]) for j in range(i, z.shape[1])]
    design = np.column_stack([np.ones(len(z)), z, *pairs])
    coefficients, *_ = np.linalg.lstsq(design, inputs, rcond=None)
    residual = inputs - design @ coefficients
    return float(1.0 - np.sum(residual**2) / np.sum((inputs - inputs.mean(axis=0)) ** 2))
