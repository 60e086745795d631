"""data_fetch: the `dijet_resonance` dataset (lesson 03), its large-R jets and N-subjettiness."""

import dataclasses

import awkward as ak
import numpy as np
import pytest
from dataset_helpers import key, particle_batch

import data_fetch
from data_fetch import dataset, opendata, pythia_source
from data_fetch.__main__ import main as cli
from data_fetch.registry import CMS_AD, DIJET_RESONANCE, REWEIGHTING, get_spec

# 500 events (450 QCD, 50 W'): about 6 s on one core with MPI off.
N_EVENTS = 500
SEED = 3


@pytest.fixture(scope="module")
def sample():
    arrays, _ = pythia_source.produce(DIJET_RESONANCE, N_EVENTS, SEED, progress=False, workers=1)
    return arrays


# ----------------------------------------------------------------- registry

def test_registry_lists_the_dataset(capsys):
    assert get_spec("dijet_resonance") is DIJET_RESONANCE
    assert "dijet_resonance" in data_fetch.list_datasets()
    assert DIJET_RESONANCE.sources == ("pythia",)
    qcd, wprime = DIJET_RESONANCE.processes
    assert (qcd.name, qcd.code, qcd.label, qcd.fraction) == ("qcd", 0, 0, 0.9)
    assert (wprime.name, wprime.code, wprime.label, wprime.fraction) == ("wprime_xy", 1, 1, 0.1)
    for line in ("34:m0 = 3500.", "37:m0 = 500.", "36:m0 = 100.", "34:oneChannel = 1 1.0 100 37 36"):
        assert line in wprime.pythia_settings, line
    assert "HardQCD:all = on" in qcd.pythia_settings
    assert cli(["info", "dijet_resonance"]) == 0
    out = capsys.readouterr().out
    assert "jet1_tau21" in out and "mjj" in out and "sources: pythia" in out


def test_plan_splits_nine_to_one():
    tasks = pythia_source.plan_tasks(DIJET_RESONANCE, 1000, seed=0)
    per_process = {}
    for t in tasks:
        per_process[t.process.name] = per_process.get(t.process.name, 0) + t.n_events
    assert per_process == {"qcd": 900, "wprime_xy": 100}
    assert {t.dataset for t in tasks} == {"dijet_resonance"}


# ----------------------------------------------------------------- generated arrays

def test_arrays_follow_the_schema(sample):
    assert list(sample) == list(DIJET_RESONANCE.schema)
    for name, schema in DIJET_RESONANCE.schema.items():
        assert sample[name].dtype == np.dtype(schema.dtype), name
        assert sample[name].shape == (N_EVENTS,), name
        assert np.all(np.isfinite(sample[name])), name
    assert np.sum(sample["label"] == 1) == N_EVENTS // 10
    assert np.array_equal(sample["label"], sample["process"]) and np.all(sample["weight"] == 1)
    for i in (1, 2):
        for ratio in ("tau21", "tau32"):
            values = sample[f"jet{i}_{ratio}"]
            # With kT axes (not minimized) a very narrow jet can give a ratio above 1: measured
            # 5.1-7.2% of jets per ratio, at most 1.48, in 40 000 events.
            assert np.all((values >= 0) & (values < 2)), f"jet{i}_{ratio}"
            assert np.mean(values > 1) < 0.12, f"jet{i}_{ratio}"
    assert np.all(sample["jet1_pt"] >= sample["jet2_pt"]), "jet1 is the leading jet"


def test_the_physics_of_both_samples(sample):
    signal, qcd = sample["label"] == 1, sample["label"] == 0
    heavy = np.maximum(sample["jet1_mass"], sample["jet2_mass"])
    light = np.minimum(sample["jet1_mass"], sample["jet2_mass"])
    # Measured on 40 000 events (seed 0): W' m_jj median 3459 GeV, heavier / lighter jet mass
    # medians 490 / 104 GeV (X at 500, Y at 100 GeV); QCD m_jj median 3052 GeV, heavier jet
    # mass median 219 GeV. The windows allow for 50 signal events.
    assert 3300 < np.median(sample["mjj"][signal]) < 3600
    assert 440 < np.median(heavy[signal]) < 530 and 80 < np.median(light[signal]) < 125
    assert 2800 < np.median(sample["mjj"][qcd]) < 3400
    # m-hat > 2.6 TeV at generation: 95.9% of QCD events above 2.4 TeV at 40 000 events
    assert np.mean(sample["mjj"][qcd] > 2400) > 0.90
    # Two-pronged X and Y: smaller tau21 than QCD jets (leading jet medians 0.26 vs 0.57 at 40 000 events).
    assert np.median(sample["jet1_tau21"][signal]) < np.median(sample["jet1_tau21"][qcd]) - 0.1


def test_same_seed_same_events_other_seed_other_events():
    first, _ = pythia_source.produce(DIJET_RESONANCE, 30, seed=5, progress=False, workers=1)
    again, _ = pythia_source.produce(DIJET_RESONANCE, 30, seed=5, progress=False, workers=1)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)
    other, _ = pythia_source.produce(DIJET_RESONANCE, 30, seed=6, progress=False, workers=1)
    assert not np.array_equal(first["mjj"], other["mjj"])


# ----------------------------------------------------------------- hand-made jets

def four_vectors(jets):
    """Jets given as lists of massless particles (pT, rapidity, phi)."""
    columns = {k: [] for k in ("px", "py", "pz", "E")}
    for jet in jets:
        pt, y, phi = (np.array([p[i] for p in jet], dtype=float) for i in range(3))
        for name, values in zip(columns, (pt * np.cos(phi), pt * np.sin(phi),
                                          pt * np.sinh(y), pt * np.cosh(y))):
            columns[name].append(values.tolist())
    return ak.zip({k: ak.values_astype(ak.Array(v), np.float64) for k, v in columns.items()})


def test_nsubjettiness_on_hand_made_jets():
    jets = four_vectors([
        [(100, -0.2, 0), (100, 0.2, 0)],  # two prongs: tau1 = 0.2 (axis in between), tau2 = 0
        [(100, -0.2, 0), (100, 0.2, 0), (50, 0, 0.5)],  # three prongs: tau3 = 0
        [(100, 0, 0)],  # one particle: fewer than three, zeros
    ])
    taus = pythia_source.nsubjettiness(jets, n_max=3, radius=1.0)
    assert taus.shape == (3, 3)
    np.testing.assert_allclose(taus[1, 2], 0.0, atol=1e-9)
    np.testing.assert_array_equal(taus[2], 0.0)
    two = pythia_source.nsubjettiness(jets[:1], n_max=2, radius=1.0)[0]
    np.testing.assert_allclose(two, [0.2, 0.0], atol=1e-9)
    assert 0 < taus[1, 1] < taus[1, 0], "more axes describe three prongs better"


def test_large_r_dijets_on_hand_made_events():
    events = particle_batch([
        [(500.0, 0, 0, 500.0, 211), (-400.0, 0, 0, 400.0, 22)],  # back to back: m_jj = 2 sqrt(E1 E2)
        [(500.0, 0, 0, 500.0, 211), (0, 0, 50.0, 50.0, 12)],  # one jet (a neutrino is invisible)
        [],
    ])
    arrays = pythia_source.large_r_dijets(events)
    assert set(arrays) == set(DIJET_RESONANCE.schema) - {"label", "process", "weight"}
    assert all(v.dtype == np.float32 and v.shape == (3,) for v in arrays.values())
    assert arrays["mjj"][0] == pytest.approx(2 * np.sqrt(500 * 400))
    assert (arrays["jet1_pt"][0], arrays["jet2_pt"][0]) == pytest.approx((500, 400))
    assert arrays["jet1_mass"][0] == pytest.approx(0, abs=1e-3)
    assert arrays["mjj"][1] == 0 and arrays["jet1_pt"][1] == pytest.approx(500)
    assert arrays["jet2_pt"][1] == 0
    for name, values in arrays.items():
        assert values[2] == 0, name


# ----------------------------------------------------------------- cache keys and sources

def test_cache_keys():
    assert key(CMS_AD) == "3f9ad02804d740f4", "adding a dataset keeps the cms_ad cache valid"
    base = key(DIJET_RESONANCE)
    assert base not in (key(CMS_AD), key(REWEIGHTING))
    assert key(DIJET_RESONANCE, n=10_001) != base and key(DIJET_RESONANCE, seed=1) != base
    qcd, wprime = DIJET_RESONANCE.processes
    lighter = dataclasses.replace(wprime, pythia_settings=tuple(
        "37:m0 = 400." if line == "37:m0 = 500." else line for line in wprime.pythia_settings))
    assert key(dataclasses.replace(DIJET_RESONANCE, processes=(qcd, lighter))) != base


def test_cache_key_covers_the_jet_settings(monkeypatch):
    base, reweighting = key(DIJET_RESONANCE), key(REWEIGHTING)
    monkeypatch.setitem(pythia_source.LARGE_R_JETS, "jet_radius", 0.8)
    assert key(DIJET_RESONANCE) != base
    assert key(REWEIGHTING) == reweighting and key(CMS_AD) == "3f9ad02804d740f4"


def test_only_the_pythia_source(data_dir, monkeypatch, capsys):
    def must_not_probe(*args, **kwargs):
        raise AssertionError("the CERN Open Data portal must not be asked")

    monkeypatch.setattr(opendata, "portal_reachable", must_not_probe)
    assert dataset.resolve_source("auto", DIJET_RESONANCE)[0] == "pythia"
    with pytest.raises(data_fetch.DataFetchError, match="no opendata source"):
        data_fetch.load("dijet_resonance", n_events=10, source="opendata")
