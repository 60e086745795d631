"""data_fetch: the physics of the `dijet_resonance` dataset (lesson 03), its large-R jets and
N-subjettiness.

The checks every dataset passes (schema, labels, seeds, cache keys, sources, bad input) are in
test_datasets.py, with this dataset's sample size and seed in dataset_helpers.DATASETS.
"""

import awkward as ak
import numpy as np
import pytest
from dataset_helpers import CASES, generated, particle_batch

from data_fetch import pythia_source
from data_fetch.registry import DIJET_RESONANCE

CASE = CASES["dijet_resonance"]


@pytest.fixture(scope="module")
def sample():
    return generated("dijet_resonance")[0]


# ----------------------------------------------------------------- settings


def test_the_signal_and_background_settings():
    qcd, wprime = DIJET_RESONANCE.processes
    for line in ("34:m0 = 3500.", "37:m0 = 500.", "36:m0 = 100.", "34:oneChannel = 1 1.0 100 37 36"):
        assert line in wprime.pythia_settings, line
    assert "HardQCD:all = on" in qcd.pythia_settings


# ----------------------------------------------------------------- generated arrays


def test_subjettiness_ratios_and_jet_order(sample):
    for i in (1, 2):
        for ratio in ("tau21", "tau32"):
            values = sample[f"jet{i}_{ratio}"]
            # With kT axes (not minimized) a very narrow jet can give a ratio above 1: measured
            # 5.1-7.2% of jets per ratio, at most 1.48, in 40 000 events.
            assert np.all((values >= 0) & (values < 2)), f"jet{i}_{ratio}"
            assert np.mean(values > 1) < 0.12, f"jet{i}_{ratio}"
    assert np.all(sample["jet1_pt"] >= sample["jet2_pt"]), "jet1 is the leading jet"


def test_the_physics_of_both_samples(sample):
    assert (CASE.n_small, CASE.seed) == (500, 3), "the windows below are about this sample"
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


# ----------------------------------------------------------------- hand-made jets


def four_vectors(jets):
    """Jets given as lists of massless particles (pT, rapidity, phi)."""
    columns = {k: [] for k in ("px", "py", "pz", "E")}
    for jet in jets:
        pt, y, phi = (np.array([p[i] for p in jet], dtype=float) for i in range(3))
        for name, values in zip(columns, (pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(y), pt * np.cosh(y))):
            columns[name].append(values.tolist())
    return ak.zip({k: ak.values_astype(ak.Array(v), np.float64) for k, v in columns.items()})


def test_nsubjettiness_on_hand_made_jets():
    jets = four_vectors(
        [
            [(100, -0.2, 0), (100, 0.2, 0)],  # two prongs: tau1 = 0.2 (axis in between), tau2 = 0
            [(100, -0.2, 0), (100, 0.2, 0), (50, 0, 0.5)],  # three prongs: tau3 = 0
            [(100, 0, 0)],  # one particle: fewer than three, zeros
        ]
    )
    taus = pythia_source.nsubjettiness(jets, n_max=3, radius=1.0)
    assert taus.shape == (3, 3)
    np.testing.assert_allclose(taus[1, 2], 0.0, atol=1e-9)
    np.testing.assert_array_equal(taus[2], 0.0)
    two = pythia_source.nsubjettiness(jets[:1], n_max=2, radius=1.0)[0]
    np.testing.assert_allclose(two, [0.2, 0.0], atol=1e-9)
    assert 0 < taus[1, 1] < taus[1, 0], "more axes describe three prongs better"


def test_large_r_dijets_on_hand_made_events():
    events = particle_batch(
        [
            [(500.0, 0, 0, 500.0, 211), (-400.0, 0, 0, 400.0, 22)],  # back to back: m_jj = 2 sqrt(E1 E2)
            [(500.0, 0, 0, 500.0, 211), (0, 0, 50.0, 50.0, 12)],  # one jet (a neutrino is invisible)
            [],
        ]
    )
    arrays = pythia_source.large_r_dijets(events)  # names, dtypes and shapes: test_datasets.py
    assert arrays["mjj"][0] == pytest.approx(2 * np.sqrt(500 * 400))
    assert (arrays["jet1_pt"][0], arrays["jet2_pt"][0]) == pytest.approx((500, 400))
    assert arrays["jet1_mass"][0] == pytest.approx(0, abs=1e-3)
    assert arrays["mjj"][1] == 0 and arrays["jet1_pt"][1] == pytest.approx(500)
    assert arrays["jet2_pt"][1] == 0
    for name, values in arrays.items():
        assert values[2] == 0, name
