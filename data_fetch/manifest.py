"""The manifest of the course's samples: every dataset size and seed a notebook, a test or the grader uses.

One entry per sample and role:

* ``lecture``: a lecture notebook's default (its ``parameters`` cell), what ``bash run.sh course`` runs;
* ``ci``: the same lecture at the test suite's scale (injected by ``tests/notebook_expectations.py``);
* ``exercise``: an exercise's default, the same at every scale (students run it on a laptop);
* ``held_out``: the events a hidden quality test judges a student's model on. Only the size is here.
  A grading run draws its seed in secret (``autograder.batch.held_out``); outside grading (the test
  suite running a solution, an author trying a hidden test) the stand-in seeds of
  :data:`STAND_IN_SEEDS` are used, and since they are public no grading run ever uses them.

``python -m data_fetch fetch-course --scale ci|lecture [--lesson NN]`` produces what a scale needs
(``run.sh`` calls it); the notebooks keep their sizes as literals in their ``parameters`` cells (papermill
needs them there), and ``tests/test_manifest.py`` fails when one of them and this table disagree.
A new lesson adds its samples here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import DataFetchError

ROLES = ("lecture", "ci", "exercise", "held_out")
#: What each scale of ``fetch-course`` produces. Exercises and held-out samples are the same at both
#: scales: ``run.sh course`` runs the solutions too, and they load their held-out stand-ins.
SCALES = {"lecture": ("lecture", "exercise", "held_out"), "ci": ("ci", "exercise", "held_out")}


@dataclass(frozen=True)
class Sample:
    """One sample of the course: ``n_events`` events of ``dataset`` from ``seed`` (None: drawn by the
    grader for each grading run), in the given role, for the notebooks in ``used_by``."""

    dataset: str
    role: str
    n_events: int
    seed: int | None
    used_by: tuple[str, ...]

    @property
    def lessons(self) -> tuple[str, ...]:
        """The two-digit numbers of the lessons that use it (``course/01_x.ipynb`` -> ``"01"``)."""
        return tuple(sorted({lesson_of(path) for path in self.used_by}))


def lesson_of(path: str) -> str:
    """The lesson number of a notebook path: the two digits its name or its folder starts with."""
    match = re.search(r"(?:^|/)(\d\d)_", path)
    if match is None:
        raise ValueError(f"{path} is not a lesson's notebook (NN_name)")
    return match.group(1)


_L00 = "course/00_getting_started.ipynb"
_L01 = "course/01_autoencoder_anomaly_detection.ipynb"
_L02 = "course/02_likelihood_ratio_reweighting.ipynb"
_L03 = "course/03_cwola_hunting.ipynb"
_L04 = "course/04_jet_taggers.ipynb"
_L05 = "course/05_normalized_autoencoders.ipynb"
_L06 = "course/06_hls4ml_fpga.ipynb"
_E00 = "solutions/00_getting_started/00_getting_started.ipynb"
_E01 = "solutions/01_autoencoder_anomaly_detection/01_autoencoder_anomaly_detection.ipynb"
_E02 = "solutions/02_likelihood_ratio_reweighting/02_likelihood_ratio_reweighting.ipynb"
_E03 = "solutions/03_cwola_hunting/03_cwola_hunting.ipynb"
_E04 = "solutions/04_jet_taggers/04_jet_taggers.ipynb"
_E05 = "solutions/05_normalized_autoencoders/05_normalized_autoencoders.ipynb"
_E06 = "solutions/06_hls4ml_fpga/06_hls4ml_fpga.ipynb"

SAMPLES: tuple[Sample, ...] = (
    # cms_ad (lessons 00, 01, 06): 80% QCD (with W/Z+jets), 20% graviton. 100 000 events take about 20
    # minutes to generate on two cores; 10 000 keep the exercises and the tests to a minute or two.
    Sample("cms_ad", "lecture", 100_000, 0, (_L00, _L01, _L06)),
    Sample("cms_ad", "ci", 10_000, 0, (_L00, _L01, _L06)),
    Sample("cms_ad", "exercise", 10_000, 0, (_E00, _E01, _E06)),
    Sample("cms_ad", "held_out", 5_000, None, (_E01, _E06)),
    # reweighting (lesson 02): half per shower configuration.
    Sample("reweighting", "lecture", 200_000, 0, (_L02,)),
    Sample("reweighting", "ci", 20_000, 0, (_L02,)),
    Sample("reweighting", "exercise", 20_000, 0, (_E02,)),
    Sample("reweighting", "held_out", 10_000, None, (_E02,)),
    # shower_scan (lesson 02, DCTR): 30% nominal, 8% at each of seven couplings, 14% pseudo-data.
    Sample("shower_scan", "lecture", 200_000, 0, (_L02,)),
    Sample("shower_scan", "ci", 20_000, 0, (_L02,)),
    # dijet_resonance (lesson 03): 90% QCD, 10% W' signal pool from which the lesson injects. The
    # held-out sample is as large as the exercise's: CWoLa needs a few thousand QCD events in the
    # signal region to learn anything.
    Sample("dijet_resonance", "lecture", 400_000, 0, (_L03,)),
    Sample("dijet_resonance", "ci", 40_000, 0, (_L03,)),
    Sample("dijet_resonance", "exercise", 40_000, 0, (_E03,)),
    Sample("dijet_resonance", "held_out", 40_000, None, (_E03,)),
    # top_tagging (lessons 04, 05): jets, half top, half QCD; 10 000 take 36 s on two cores. The held-out
    # sample's 5 000 QCD jets measure a rejection of 400 at eps_S = 0.3 from about 13 jets (28%).
    Sample("top_tagging", "lecture", 30_000, 0, (_L04, _L05)),
    Sample("top_tagging", "ci", 10_000, 0, (_L04, _L05)),
    Sample("top_tagging", "exercise", 10_000, 0, (_E04, _E05)),
    Sample("top_tagging", "held_out", 10_000, None, (_E04, _E05)),
)

#: Seeds of the held-out samples outside grading: public, since they are in this file, so a grading
#: run never uses them (it draws its own).
STAND_IN_SEEDS = {"cms_ad": 2024, "reweighting": 2025, "dijet_resonance": 2026, "top_tagging": 2027}


def sample(dataset: str, role: str) -> Sample:
    """The manifest's entry for ``dataset`` in ``role`` (a DataFetchError if it has none)."""
    for entry in SAMPLES:
        if entry.dataset == dataset and entry.role == role:
            return entry
    known = sorted({entry.dataset for entry in SAMPLES})
    raise DataFetchError(
        f"the manifest has no {role} sample of {dataset!r} (datasets: {', '.join(known)}; "
        f"roles: {', '.join(ROLES)})"
    )


def held_out_size(dataset: str) -> int:
    """Events in the held-out sample of ``dataset`` (what a hidden test gets by default)."""
    return sample(dataset, "held_out").n_events


def sample_parameters(dataset: str, role: str) -> dict:
    """The ``n_events`` and ``seed`` of the manifest's ``role`` sample of ``dataset``, as notebook parameters."""
    entry = sample(dataset, role)
    return {"n_events": entry.n_events, "seed": entry.seed}


def ci_parameters(dataset: str) -> dict:
    """The parameters the test suite injects into a lecture on ``dataset``: size, seed, offline source."""
    return {**sample_parameters(dataset, "ci"), "source": "pythia"}


def lessons() -> list[str]:
    """The lessons that have samples, as two-digit numbers."""
    return sorted({lesson for entry in SAMPLES for lesson in entry.lessons})


def course_samples(scale: str, lesson: str | None = None) -> list[tuple[Sample, int]]:
    """(sample, seed) of everything ``scale`` needs, for one lesson or all, each distinct
    (dataset, n_events, seed) once; held-out samples with their stand-in seeds."""
    if scale not in SCALES:
        raise DataFetchError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    if lesson is not None:
        lesson = f"{int(lesson):02d}" if str(lesson).isdigit() else str(lesson)
        if lesson not in lessons():
            raise DataFetchError(f"no lesson {lesson} in the manifest; lessons: {', '.join(lessons())}")
    chosen, seen = [], set()
    for entry in SAMPLES:
        if entry.role not in SCALES[scale] or (lesson is not None and lesson not in entry.lessons):
            continue
        seed = STAND_IN_SEEDS[entry.dataset] if entry.seed is None else entry.seed
        if (entry.dataset, entry.n_events, seed) not in seen:
            seen.add((entry.dataset, entry.n_events, seed))
            chosen.append((entry, seed))
    return chosen


def fetch_course(
    scale: str, lesson: str | None = None, source: str = "pythia", scheduler: str | None = None
) -> list[dict]:
    """Produce (or find in the cache) every sample ``scale`` needs; returns what was fetched.

    ``scheduler``: the Dask scheduler that generates them (see :func:`data_fetch.load`).
    """
    from .dataset import load

    fetched = []
    for entry, seed in course_samples(scale, lesson):
        uses = ", ".join(entry.used_by)
        print(f"== {entry.dataset}: {entry.n_events} events, seed {seed} ({entry.role}: {uses})", flush=True)
        data = load(entry.dataset, n_events=entry.n_events, seed=seed, source=source, scheduler=scheduler)
        fetched.append(
            {
                "dataset": entry.dataset,
                "role": entry.role,
                "n_events": len(data),
                "seed": seed,
                "source": data.source,
            }
        )
    return fetched
