"""The table of datasets that tests/test_datasets.py checks, and helpers shared by the dataset tests.

Every dataset of the registry has one :class:`DatasetCase` in :data:`DATASETS`: what the tests
expect of it (its processes, sources, the size of its test sample) and the settings a test may
change to see the cache key move. tests/test_datasets.py runs the checks every dataset must pass
once per case; each dataset's own file (test_data_fetch.py for cms_ad, test_<name>_dataset.py for
the others) keeps only its physics. A new dataset adds a case here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import awkward as ak
import numpy as np

from data_fetch import cache, pythia_source
from data_fetch.registry import DatasetSpec, get_spec


@dataclass(frozen=True)
class DatasetCase:
    name: str
    #: (name, code, label, fraction) of each generated process, in the registry's order
    processes: tuple
    sources: tuple
    default_n_events: int
    #: the module sample: ``n_small`` events from ``seed`` (one worker), shared by every test file
    n_small: int
    seed: int
    #: events per process code in that sample (by construction: fraction x n_small, rounded)
    small_counts: dict
    #: events per process name of plan_tasks(spec, plan_n, seed=0)
    plan_n: int
    plan_counts: dict
    #: an array whose values differ event by event: a different seed must give different ones
    varying: str
    #: a changed Pythia setting that must change the cache key: (process, old line or None to
    #: append, new line)
    pythia_change: tuple
    #: the dict of pythia_source that configures this dataset's builder (dotted: one of a module it
    #: imports, e.g. "top_tagging.JETS"), one of its keys and
    #: another value: changing it must change this dataset's key and no other's
    builder_setting: tuple
    #: texts that `python -m data_fetch info NAME` must show
    info_mentions: tuple = ()
    #: every event has weight 1 (no pT-hat bias)
    unit_weights: bool = True
    #: the cache key of 10 000 events from seed 0, pinned where files in users' caches rely on it
    pinned_key: str | None = None
    #: events of the reproducibility check (few: it produces them three times, once on two workers);
    #: at least one task per process
    n_repro: int = 10

    @property
    def spec(self) -> DatasetSpec:
        return get_spec(self.name)

    def __str__(self) -> str:  # the test ids: test_x[cms_ad]
        return self.name


DATASETS = [
    DatasetCase(
        "cms_ad",
        processes=(("qcd", 0, 0, 0.70), ("wjets", 1, 0, 0.07), ("zjets", 2, 0, 0.03), ("graviton_ww", 3, 1, 0.20)),
        sources=("pythia", "opendata"),
        default_n_events=200_000,
        n_small=60,
        seed=3,  # every process gets at least one task (42 QCD, 4 W, 2 Z, 12 graviton)
        small_counts={0: 42, 1: 4, 2: 2, 3: 12},
        plan_n=1001,
        plan_counts={"qcd": 701, "wjets": 70, "zjets": 30, "graviton_ww": 200},
        varying="objects",
        pythia_change=("qcd", None, "PartonLevel:MPI = off"),
        builder_setting=("DETECTOR", "jet_radius", 0.5),
        info_mentions=("objects", "(pT [GeV], eta, phi)"),
        unit_weights=False,  # the pT-hat bias of the QCD sample
        n_repro=17,  # the fewest events with one task per process (12 QCD, 1 W, 1 Z, 3 graviton)
        # The cms_ad key (10 000 events, seed 0, pythia8mc 8.317.2) from before the other datasets
        # existed: adding a dataset must not invalidate the cms_ad files already cached.
        pinned_key="3f9ad02804d740f4",
    ),
    DatasetCase(
        "reweighting",
        processes=(("nominal", 0, 0, 0.5), ("fsr_alphas_low", 1, 1, 0.5)),
        sources=("pythia",),
        default_n_events=200_000,
        # Enough events for the constituent-count comparison of test_reweighting_dataset.py to be
        # reliable (see there); about 6 s on one core with MPI off.
        n_small=800,
        seed=11,
        small_counts={0: 400, 1: 400},
        plan_n=1001,
        plan_counts={"nominal": 501, "fsr_alphas_low": 500},
        varying="jet_pt",
        pythia_change=("fsr_alphas_low", "TimeShower:alphaSvalue = 0.115", "TimeShower:alphaSvalue = 0.125"),
        builder_setting=("JET_OBSERVABLES", "jet_radius", 1.0),
        info_mentions=("jet_n_constituents", "sources: pythia", "[GeV]"),
    ),
    DatasetCase(
        "shower_scan",
        processes=(
            ("nominal", 0, 0, 0.30),
            *((f"grid_{v}", code, 1, 0.08) for code, v in enumerate((100, 110, 120, 130, 140, 150, 160), start=1)),
            ("pseudo_data", 8, 1, 0.14),
        ),
        sources=("pythia",),
        default_n_events=200_000,
        n_small=100,
        seed=5,
        small_counts={0: 30, **{code: 8 for code in range(1, 8)}, 8: 14},
        plan_n=1000,
        plan_counts={
            "nominal": 300,
            **{f"grid_{v}": 80 for v in (100, 110, 120, 130, 140, 150, 160)},
            "pseudo_data": 140,
        },
        varying="jet_pt",
        pythia_change=("grid_120", "TimeShower:alphaSvalue = 0.12", "TimeShower:alphaSvalue = 0.121"),
        builder_setting=("JET_OBSERVABLES", "jet_radius", 1.0),
        info_mentions=("jet_n_constituents", "sources: pythia", "SHOWER_SCAN_ALPHA_S"),
        n_repro=9,  # one task per process
    ),
    DatasetCase(
        "dijet_resonance",
        processes=(("qcd", 0, 0, 0.9), ("wprime_xy", 1, 1, 0.1)),
        sources=("pythia",),
        default_n_events=400_000,
        n_small=500,
        seed=3,  # 450 QCD, 50 W': about 6 s on one core with MPI off
        small_counts={0: 450, 1: 50},
        plan_n=1000,
        plan_counts={"qcd": 900, "wprime_xy": 100},
        varying="mjj",
        pythia_change=("wprime_xy", "37:m0 = 500.", "37:m0 = 400."),
        builder_setting=("LARGE_R_JETS", "jet_radius", 0.8),
        info_mentions=("jet1_tau21", "mjj", "sources: pythia"),
    ),
    DatasetCase(
        "top_tagging",
        processes=(("qcd", 0, 0, 0.5), ("ttbar", 1, 1, 0.5)),
        sources=("pythia",),
        default_n_events=100_000,
        # Rows are selected jets: a task generates batches of 100 events until it has its jets
        # (about 2 s on one core for these 200).
        n_small=200,
        seed=3,
        small_counts={0: 100, 1: 100},
        plan_n=1001,
        plan_counts={"qcd": 501, "ttbar": 500},
        varying="jet_mass",
        pythia_change=("ttbar", "PhaseSpace:pTHatMin = 500.", "PhaseSpace:pTHatMin = 450."),
        builder_setting=("top_tagging.JETS", "jet_radius", 1.0),
        info_mentions=("constituents", "tau3", "(pT [GeV], eta, phi, E [GeV])", "sources: pythia"),
    ),
]
CASES = {case.name: case for case in DATASETS}


@functools.cache
def generated(name: str, n_events: int | None = None, seed: int | None = None) -> tuple[dict, dict]:
    """(arrays, metadata) of ``n_events`` events of dataset ``name`` from the offline source on one
    worker; by default its case's sample. Made once per test session, whichever files share it; the
    arrays are read-only so that no test can change what the others see."""
    case = CASES[name]
    n_events = case.n_small if n_events is None else n_events
    seed = case.seed if seed is None else seed
    arrays, metadata = pythia_source.produce(case.spec, n_events, seed, progress=False, workers=1)
    for values in arrays.values():
        values.flags.writeable = False
    return arrays, metadata


def particle_batch(events):
    """A batch of events given as lists of (px, py, pz, E, pdg id), as the builders receive it."""
    columns = {k: [[p[i] for p in event] for event in events] for i, k in enumerate(("px", "py", "pz", "E", "id"))}
    return ak.zip(
        {k: ak.values_astype(ak.Array(v), np.int32 if k == "id" else np.float64) for k, v in columns.items()}
    )


def key(spec, n=10_000, seed=0):
    """The cache key of ``n`` events of ``spec`` from the offline source."""
    return cache.cache_key(pythia_source.cache_description(spec, n, seed))


def shape_of(schema_shape: tuple, n_events: int) -> tuple:
    """A schema's shape with the number of events in place of ``"n"``."""
    return tuple(n_events if d == "n" else d for d in schema_shape)


def fake_produce(spec, n_events, seed, progress=True, workers=None, scheduler=None):
    """A stand-in for pythia_source.produce: random arrays that follow the schema, from the seed."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, schema in spec.schema.items():
        shape = shape_of(schema.shape, n_events)
        if np.issubdtype(np.dtype(schema.dtype), np.integer):
            arrays[name] = rng.integers(0, 2, shape).astype(schema.dtype)
        else:
            arrays[name] = rng.random(shape).astype(schema.dtype)
    return arrays, {"generator": "fake"}
