"""Held-out samples for the hidden quality tests of lessons 01-03, and checks of what students return.

A quality test judges the student's model on events the notebook never saw. Those events, and above
all their truth labels, must stay out of the student's reach:

* **In a grading run** (``python -m autograder grade``) the grader draws a seed for the run (or takes
  ``--held-out-seed``), records it in the output folder and generates the samples the assignment's
  tests ask for into a cache of its own, which no student's kernel can read. The test cells run in
  the grader's process, where :func:`held_out_sample` returns those samples; the student's code is
  handed features only (:func:`features_only`), in an order drawn from the same secret seed.
* **Anywhere else** (the test suite running a solution notebook, an author trying a hidden test) the
  same call loads the sample with a fixed public seed from the ordinary data cache.

The sizes of the samples are in the course's manifest (``data_fetch.manifest``), with the stand-in seeds.

The secret is the seed: with it, anyone could generate the same events with Pythia and look up
their labels, so it never enters a kernel, and the samples made from it never lie where one can read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import data_fetch
from data_fetch import Dataset, manifest

#: Seeds of the held-out samples outside grading (public: they are in the course's manifest).
PUBLIC_SEEDS = manifest.STAND_IN_SEEDS
#: Arrays that are not observables: the truth, and the generator's event weight (which in cms_ad is
#: exactly 1 for the signal alone). A student's code never gets them with held-out events.
NOT_FEATURES = ("label", "process", "weight")

_grading: dict | None = None  # {"seed": int, "cache_dir": Path} while the grader runs tests


def use_grading_samples(seed: int | None, cache_dir: str | Path = "") -> None:
    """Called by the grader before its test cells run: serve the samples of this grading run
    (``seed`` None: the run prepared none, and a test that asks for one fails)."""
    global _grading
    _grading = {"seed": None if seed is None else int(seed), "cache_dir": Path(cache_dir)}


def grading() -> bool:
    """True in the grader's process during a grading run."""
    return _grading is not None


def _grading_seed() -> int:
    if _grading is None or _grading["seed"] is None:
        raise RuntimeError(
            "this grading run prepared no held-out samples: the grader finds them in the "
            "test cells' held_out_sample calls, which must name the dataset and n_events literally"
        )
    return _grading["seed"]


def held_out_sample(name: str, n_events: int | None = None, source: str = "auto") -> Dataset:
    """``n_events`` fresh events of dataset ``name`` for a hidden test, with their labels (by default
    as many as the manifest's held-out sample of ``name`` holds).

    In a grading run: the grader's sample for this run (generated offline with Pythia, whatever
    ``source`` says, since the students' kernels had no network either). Elsewhere: the sample
    with the public seed, from ``source``.
    """
    if n_events is None:
        n_events = manifest.held_out_size(name)
    if _grading is not None:
        return data_fetch.load(
            name,
            n_events=n_events,
            seed=_grading_seed(),
            source="pythia",
            progress=False,
            cache_dir=_grading["cache_dir"],
        )
    return data_fetch.load(name, n_events=n_events, seed=PUBLIC_SEEDS[name], source=source, progress=False)


def held_out_rng() -> np.random.Generator:
    """Random numbers for a hidden test's splits and orderings: from the run's secret seed when
    grading, so that no student can replay them; from a public seed elsewhere."""
    seed = _grading_seed() if _grading is not None else 2026
    return np.random.default_rng([seed, 1])  # a stream of its own, not the one that made the events


def features_only(sample: Dataset) -> Dataset:
    """The sample's observables alone: what a student's function may see of held-out events."""
    return Dataset(
        sample.name, sample.source, {key: array for key, array in sample.arrays.items() if key not in NOT_FEATURES}
    )


def checked(values, what: str, shape: tuple, low: float | None = None, high: float | None = None) -> np.ndarray:
    """``values`` as a float64 array, if it has ``shape`` (None: any length) and finite entries in
    [low, high]; else an AssertionError that says what was wrong (the test then scores 0).

    A quality score computed from NaN or from an array of the wrong shape can be anything (a chi2
    of no bins is 0), so every result of a student's code is checked before it is scored.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"{what} must give an array of numbers ({error})") from None
    expected = tuple(shape)
    if array.ndim != len(expected) or any(
        want is not None and got != want for got, want in zip(array.shape, expected)
    ):
        shown = tuple("any" if want is None else want for want in expected)
        raise AssertionError(f"{what} must give an array of shape {shown}, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise AssertionError(f"{what} gave {int(bad.sum())} values that are not finite numbers (nan or inf)")
    if low is not None and array.size and array.min() < low:
        raise AssertionError(f"{what} gave values below {low:g} (smallest {array.min():g})")
    if high is not None and array.size and array.max() > high:
        raise AssertionError(f"{what} gave values above {high:g} (largest {array.max():g})")
    return array
