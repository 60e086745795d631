"""Plot helpers shared by the lessons (introduced in lesson 00)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import mplhep
import numpy as np


def use_style() -> None:
    """The CMS style of mplhep for every plot of the course."""
    plt.style.use(mplhep.style.CMS)


def label(ax=None, source: str = "pythia", **kwargs):
    """The experiment label: 'Open Data' for the real CMS simulation, 'Simulation' otherwise.

    The offline source is our own Pythia + parametric detector, so it is labelled as a
    generic simulation rather than as CMS.
    """
    if source == "opendata":
        return mplhep.cms.label("Open Data Simulation", data=False, ax=ax, rlabel="13 TeV", **kwargs)
    return mplhep.label.exp_label(exp="", llabel="Pythia 8 simulation", ax=ax, rlabel="13 TeV", **kwargs)


def compare_distributions(
    values_by_name: dict,
    bins,
    ax=None,
    xlabel: str = "",
    density: bool = True,
    source: str = "pythia",
    logy: bool = False,
    weights_by_name: dict | None = None,
):
    """Overlay normalized histograms of several samples (e.g. background vs signal).

    Args:
        values_by_name: {legend label: 1D array}.
        bins: bin edges.
        density: normalize each histogram to unit area (compare shapes, not rates).
        weights_by_name: {legend label: event weights} for the weighted samples (the others
            count each event once).
    """
    if ax is None:
        _, ax = plt.subplots()
    weights_by_name = weights_by_name or {}
    for name, values in values_by_name.items():
        weights = weights_by_name.get(name)
        counts, edges = np.histogram(np.asarray(values), bins=bins, weights=weights)
        if density and counts.sum() > 0:
            counts = counts / counts.sum() / np.diff(edges)
        mplhep.histplot(counts, edges, ax=ax, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Density" if density else "Events")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    label(ax=ax, source=source)
    return ax


def roc_curves(curves: dict, ax=None, source: str = "pythia"):
    """ROC curves with a logarithmic false-positive-rate axis (introduced in lesson 01).

    Args:
        curves: {legend label: (labels, scores)} or {legend label: (labels, scores, event weights)}.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    from .metrics import effective_sample_size

    if ax is None:
        _, ax = plt.subplots()
    smallest_fpr = 1e-5
    for name, (labels, scores, *weights) in curves.items():
        labels, weight = np.asarray(labels), (weights[0] if weights else None)
        fpr, tpr, _ = roc_curve(labels, scores, sample_weight=weight)
        auc = roc_auc_score(labels, scores, sample_weight=weight)
        ax.plot(fpr, tpr, label=f"{name} (AUC = {auc:.3f})")
        background = np.ones(int((labels == 0).sum())) if weight is None else np.asarray(weight)[labels == 0]
        # Below about one effective background event the curve is statistics, not performance.
        smallest_fpr = max(smallest_fpr, 0.5 / max(1.0, effective_sample_size(background)))
    guess = np.logspace(-6, 0, 200)  # sampled: a straight segment would be wrong on a log axis
    ax.plot(guess, guess, ls=":", color="grey", label="random")
    ax.set_xscale("log")
    ax.set_xlim(left=smallest_fpr, right=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("background efficiency (false-positive rate)")
    ax.set_ylabel("signal efficiency")
    ax.legend(loc="upper left")
    label(ax=ax, source=source)
    return ax


def compare_with_ratio(reference, others, bins, xlabel: str = "", source: str = "pythia", density: bool = True):
    """Weighted histograms over a reference, with a ratio panel (introduced in lesson 02).

    Args:
        reference: (values, weights or None, label): the distribution to match.
        others: list of (values, weights or None, label).
        density: normalize every histogram to unit area, so that shapes are compared.

    Returns:
        (figure, (main axes, ratio axes)). Error bars are the statistical ones, sqrt(sum w^2).
    """
    import hist

    def histogram(values, weights):
        h = hist.Hist(hist.axis.Variable(bins), storage=hist.storage.Weight())
        h.fill(np.asarray(values), weight=None if weights is None else np.asarray(weights))
        scale = 1.0 / (h.sum().value * np.diff(bins)) if density and h.sum().value > 0 else 1.0
        return h.values() * scale, np.sqrt(h.variances()) * scale

    fig, (ax, ax_ratio) = plt.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    ref_values, ref_errors = histogram(reference[0], reference[1])
    mplhep.histplot(
        ref_values, bins, yerr=ref_errors, ax=ax, label=reference[2], histtype="errorbar", color="black"
    )
    ax_ratio.axhline(1, color="black", lw=1)
    for values, weights, name in others:
        counts, errors = histogram(values, weights)
        artist = mplhep.histplot(counts, bins, yerr=errors, ax=ax, label=name)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ref_values > 0, counts / ref_values, np.nan)
            ratio_error = np.where(ref_values > 0, errors / ref_values, np.nan)
        mplhep.histplot(ratio, bins, yerr=ratio_error, ax=ax_ratio, color=artist[0].stairs.get_edgecolor())
    ax.set_ylabel("Density" if density else "Events")
    ax.legend()
    ax_ratio.set_ylim(0.5, 1.5)
    ax_ratio.set_ylabel("ratio")
    ax_ratio.set_xlabel(xlabel)
    label(ax=ax, source=source)
    return fig, (ax, ax_ratio)
