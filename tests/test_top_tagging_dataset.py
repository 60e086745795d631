"""The top_tagging dataset (lessons 04, 05): its physics, the detector model and the jet arrays.
The checks every dataset must pass are in test_datasets.py."""

from __future__ import annotations

import awkward as ak
import numpy as np
from dataset_helpers import CASES, generated

from data_fetch import top_tagging
from data_fetch.registry import get_spec

CASE = CASES["top_tagging"]


def test_jets_are_in_the_window_and_tops_are_three_pronged_and_heavy():
    arrays, _ = generated("top_tagging")
    top, qcd = arrays["label"] == 1, arrays["label"] == 0
    assert np.all((arrays["jet_pt"] > 550) & (arrays["jet_pt"] < 650) & (np.abs(arrays["jet_eta"]) < 2))
    # Measured on 200 jets (seed 3) and 2 x 100 (seed 1): top mass median 170 GeV, QCD 66; tau32 0.44
    # against 0.81. A top jet holds the b and the W's two quarks: its mass is near 173 GeV.
    assert 150 < np.median(arrays["jet_mass"][top]) < 190
    assert np.median(arrays["jet_mass"][qcd]) < 110
    tau32 = arrays["tau3"] / arrays["tau2"]
    assert np.median(tau32[top]) < 0.6 < np.median(tau32[qcd])
    # More particles in a top jet (three prongs): medians 52 against 36 in the same runs.
    assert np.median(arrays["n_particles"][top]) > np.median(arrays["n_particles"][qcd])


def test_constituents_are_ordered_padded_and_inside_the_detector():
    arrays, _ = generated("top_tagging")
    constituents, count = arrays["constituents"], arrays["n_constituents"].astype(int)
    real = np.arange(constituents.shape[1]) < count[:, None]
    assert np.all(count == np.minimum(arrays["n_particles"], top_tagging.N_CONSTITUENTS))
    assert np.all(constituents[~real] == 0), "rows after the last constituent are zero"
    pt, eta, energy = constituents[..., 0], constituents[..., 1], constituents[..., 3]
    assert np.all(pt[real] > top_tagging.DETECTOR["particle_pt_min"])
    assert np.all(np.abs(eta[real]) < top_tagging.DETECTOR["eta_max"])
    assert np.all(energy[real] >= pt[real] * np.cosh(eta[real]) * (1 - 1e-5)), "E >= |p| up to float32"
    assert np.all(np.diff(pt, axis=1)[real[:, 1:]] <= 0), "pT-ordered"


def test_jets_that_fit_whole_are_their_constituents_sum():
    arrays, _ = generated("top_tagging")
    whole = arrays["n_particles"] <= top_tagging.N_CONSTITUENTS
    assert whole.mean() > 0.5  # measured: 90% of QCD and 80% of top jets have 64 particles or fewer
    c = arrays["constituents"][whole].astype(np.float64)
    px, py = (c[..., 0] * np.cos(c[..., 2])).sum(1), (c[..., 0] * np.sin(c[..., 2])).sum(1)
    pz, energy = (c[..., 0] * np.sinh(c[..., 1])).sum(1), c[..., 3].sum(1)
    np.testing.assert_allclose(np.hypot(px, py), arrays["jet_pt"][whole], rtol=1e-4)
    mass = np.sqrt(np.maximum(energy**2 - px**2 - py**2 - pz**2, 0))
    np.testing.assert_allclose(mass, arrays["jet_mass"][whole], rtol=1e-3, atol=0.05)


def test_neutral_particles_are_summed_in_calorimeter_cells():
    # Two photons in one 0.05 x 0.05 cell become one massless particle; a pion stays itself.
    px = np.array([10.0, 5.0, 20.0, 3.0])
    py = np.array([0.0, 0.001, 0.0, 0.0])
    pz = np.array([0.0, 0.0, 0.0, 0.0])
    energy = np.hypot(np.hypot(px, py), pz)
    energy[2] = np.hypot(20.0, 0.1396)  # a charged pion keeps its energy (and mass)
    pid = np.array([22, 22, 211, 14])  # ... and the neutrino leaves nothing
    inputs = top_tagging._detector_inputs(px, py, pz, energy, pid)
    assert len(inputs["E"]) == 2
    np.testing.assert_allclose(sorted(inputs["E"]), [15.0, energy[2]], rtol=1e-6)
    cell = int(np.argmin(inputs["E"]))
    cell_pt = np.hypot(inputs["px"][cell], inputs["py"][cell])
    assert abs(cell_pt - 15.0) < 15.0 * 1e-2, "massless at the cell centre: pT = E / cosh(eta)"


def test_top_jets_are_truth_matched():
    # A jet far from the top's quarks is not a top jet, whatever its pT and mass.
    jets = ak.Array(
        [[{"px": 600.0, "py": 0.0, "pz": 0.0, "E": 630.0}] * 1, [{"px": 0.0, "py": 600.0, "pz": 0.0, "E": 630.0}]]
    )
    inputs = [{c: np.asarray(jets[i][c]) for c in ("px", "py", "pz", "E")} for i in range(2)]
    near = [((0.0, 0.0), (0.1, 0.1), (-0.2, 0.0), (0.0, 0.3))]  # top, b, q, q' around phi = 0
    assert [event for event, _, _ in top_tagging._select_jets(inputs, [near, near])] == [0]
    assert [event for event, _, _ in top_tagging._select_jets(inputs, None)] == [0, 1], "QCD: no matching"


def test_the_jet_arrays_follow_the_schema():
    arrays, _ = generated("top_tagging")
    spec = get_spec("top_tagging")
    for name, schema in spec.schema.items():
        assert arrays[name].dtype == np.dtype(schema.dtype), name
        assert arrays[name].shape == tuple(CASE.n_small if d == "n" else d for d in schema.shape), name
