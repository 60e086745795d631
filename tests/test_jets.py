"""mlhep.jets: pair features against a per-pair reference, padding, jet-image normalisation and symmetry."""

import math

import numpy as np
import pytest

from mlhep.jets import (
    constituent_mask,
    feature_scaling,
    jet_images,
    pair_features,
    particle_features,
    relative_coordinates,
    shuffle_and_pad,
    smooth_images,
    standardize,
    wrap_phi,
)

N_SLOTS = 12


def random_jets(n_jets=6, n_slots=N_SLOTS, seed=0):
    """Jets with massive constituents near phi = +-pi (half of them across the boundary), padded."""
    rng = np.random.default_rng(seed)
    n_constituents = rng.integers(2, n_slots + 1, size=n_jets)
    n_constituents[0] = n_slots  # one jet without padding
    jet_eta = rng.uniform(-1.5, 1.5, n_jets)
    jet_phi = np.where(np.arange(n_jets) % 2 == 0, np.pi - 0.05, rng.uniform(-np.pi, np.pi, n_jets))
    pt = np.sort(rng.exponential(30.0, (n_jets, n_slots)) + 0.5, axis=1)[:, ::-1]
    eta = jet_eta[:, None] + rng.normal(0, 0.3, (n_jets, n_slots))
    phi = wrap_phi(jet_phi[:, None] + rng.normal(0, 0.3, (n_jets, n_slots)))
    mass = rng.choice([0.0, 0.1396, 0.4937], size=(n_jets, n_slots))
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
    constituents = np.stack([pt, eta, phi, energy], axis=-1)
    mask = constituent_mask(n_constituents, n_slots)
    constituents = np.where(mask[..., None], constituents, 0.0).astype("float32")
    jet_pt = np.where(mask, pt, 0).sum(axis=1).astype("float32")
    return constituents, n_constituents.astype("int16"), jet_pt, jet_eta.astype("float32"), jet_phi


def reference_pair(a, b, eps=1e-8):
    """One pair, written out particle by particle in plain Python."""
    (pt_a, eta_a, phi_a, e_a), (pt_b, eta_b, phi_b, e_b) = (map(float, a), map(float, b))
    p_a = (pt_a * math.cos(phi_a), pt_a * math.sin(phi_a), pt_a * math.sinh(eta_a))
    p_b = (pt_b * math.cos(phi_b), pt_b * math.sin(phi_b), pt_b * math.sinh(eta_b))
    y_a = 0.5 * math.log((e_a + p_a[2]) / (e_a - p_a[2]))
    y_b = 0.5 * math.log((e_b + p_b[2]) / (e_b - p_b[2]))
    d_phi = phi_a - phi_b
    while d_phi > math.pi:
        d_phi -= 2 * math.pi
    while d_phi <= -math.pi:
        d_phi += 2 * math.pi
    delta = math.sqrt((y_a - y_b) ** 2 + d_phi**2)
    m2 = (e_a + e_b) ** 2 - sum((u + v) ** 2 for u, v in zip(p_a, p_b))
    return [
        math.log(max(min(pt_a, pt_b) * delta, eps)),
        math.log(max(min(pt_a, pt_b) / max(pt_a + pt_b, eps), eps)),
        math.log(max(delta, eps)),
        math.log(max(m2, eps)),
    ]


def test_wrap_phi_is_in_the_half_open_interval():
    wrapped = wrap_phi(np.array([np.pi, -np.pi, 3 * np.pi, 0.1 - 2 * np.pi, 7.0]))
    assert np.allclose(wrapped, [np.pi, np.pi, np.pi, 0.1, 7.0 - 2 * np.pi])
    assert np.all((wrapped > -np.pi) & (wrapped <= np.pi))


def test_pair_features_match_a_per_pair_reference_loop():
    constituents, n_constituents, *_ = random_jets()
    constituents[1, 1] = constituents[1, 0]  # two identical particles: Delta = 0, kT = eps, z = 1/2
    got = pair_features(constituents, n_constituents, chunk=4)  # a chunk smaller than the jets
    assert got.shape == (len(constituents), N_SLOTS, N_SLOTS, 4) and got.dtype == np.float32
    for jet, n in enumerate(n_constituents):
        for i in range(N_SLOTS):
            for j in range(N_SLOTS):
                if i < n and j < n:
                    want = reference_pair(constituents[jet, i], constituents[jet, j])
                    # ln m^2 of near-collinear light pairs loses digits to cancellation: compare m^2 absolutely
                    assert got[jet, i, j, :3] == pytest.approx(want[:3], rel=1e-5, abs=1e-4), (jet, i, j)
                    assert np.exp(got[jet, i, j, 3]) == pytest.approx(math.exp(want[3]), rel=1e-3, abs=1e-3)
                else:
                    assert np.all(got[jet, i, j] == 0), f"padded pair ({i}, {j}) of jet {jet} is not zero"
    assert got[1, 0, 1, 0] == pytest.approx(math.log(1e-8)) and got[1, 0, 1, 1] == pytest.approx(math.log(0.5))


def test_pair_features_wrap_the_azimuth_across_pi():
    # Two particles at phi = pi - 0.1 and -pi + 0.1: 0.2 apart, not 2 pi - 0.2.
    pt, eta = 50.0, 0.3
    energy = pt * np.cosh(eta)
    constituents = np.array([[[pt, eta, np.pi - 0.1, energy], [pt, eta, -np.pi + 0.1, energy]]], dtype="float32")
    got = pair_features(constituents, np.array([2]))
    assert np.exp(got[0, 0, 1, 2]) == pytest.approx(0.2, rel=1e-4)
    assert np.allclose(got[0, 0, 1], got[0, 1, 0])  # symmetric


def test_particle_features_are_zero_on_padding_and_finite():
    constituents, n_constituents, jet_pt, jet_eta, jet_phi = random_jets()
    features = particle_features(constituents, n_constituents, jet_pt, jet_eta, jet_phi)
    mask = constituent_mask(n_constituents, N_SLOTS)
    assert features.shape == (len(constituents), N_SLOTS, 7) and features.dtype == np.float32
    assert np.all(features[~mask] == 0) and np.all(np.isfinite(features))
    # The relative coordinates are wrapped: jets at phi close to pi keep their constituents close.
    assert np.all(np.abs(features[mask][:, 5]) < 1.5)
    assert np.allclose(features[mask][:, 6], np.hypot(features[mask][:, 4], features[mask][:, 5]), atol=1e-6)
    assert np.allclose(features[mask][:, 0], np.log(constituents[mask][:, 0]), atol=1e-5)


def test_relative_coordinates_ignore_padding():
    constituents, n_constituents, _, jet_eta, jet_phi = random_jets()
    coordinates = relative_coordinates(constituents, n_constituents, jet_eta, jet_phi)
    assert np.all(coordinates[~constituent_mask(n_constituents, N_SLOTS)] == 0)


def test_jet_images_sum_to_one_and_ignore_constituent_order():
    constituents, n_constituents, *_ = random_jets(n_jets=20, seed=3)
    images = jet_images(constituents, n_constituents, n_pixels=40, half_width=1.5)
    assert images.shape == (20, 40, 40) and np.allclose(images.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert np.all(images >= 0)
    shuffled = shuffle_and_pad(constituents, n_constituents, N_SLOTS + 5, np.random.default_rng(1))
    assert np.allclose(jet_images(shuffled, n_constituents, n_pixels=40, half_width=1.5), images, atol=1e-6)


def test_jet_images_are_centred_and_flipped():
    # Two particles on a line at 45 degrees: after rotation both lie on the x axis, the harder one at x > 0.
    energy = lambda pt, eta: pt * np.cosh(eta)  # noqa: E731
    constituents = np.array(
        [[[300.0, 0.2, 1.2, energy(300.0, 0.2)], [100.0, -0.1, 0.9, energy(100.0, -0.1)], [0, 0, 0, 0]]],
        dtype="float32",
    )
    image = jet_images(constituents, np.array([2]), n_pixels=20, half_width=1.0)[0]
    rows, columns = np.nonzero(image)
    assert set(rows) <= {9, 10} and image.sum() == pytest.approx(1.0)
    hardest_column = columns[np.argmax(image[rows, columns])]
    assert hardest_column >= 10 and image.max() == pytest.approx(0.75)


def test_smooth_images_keep_the_pt_and_spread_it_over_the_neighbours():
    image = np.zeros((2, 21, 21))
    image[0, 10, 10] = 1.0  # one particle in the centre
    image[0, 0, 20] = 0.0
    image[1, 0, 0] = 0.5  # one in a corner: the filter's tail outside the image is put back
    smoothed = smooth_images(image, sigma=2.0)
    assert smoothed.dtype == np.float32 and smoothed.shape == image.shape
    assert np.allclose(smoothed.sum(axis=(1, 2)), [1.0, 0.5], atol=1e-6)
    centre = smoothed[0]
    # A Gaussian of sigma 2 pixels: the centre keeps 1 / (2 pi sigma^2) of the pT per pixel (a sampled
    # Gaussian sums to almost exactly 1 over the image), its neighbours exp(-1/8) of that.
    assert centre[10, 10] == pytest.approx(1 / (8 * np.pi), rel=0.01)
    assert centre[10, 11] / centre[10, 10] == pytest.approx(np.exp(-1 / 8), rel=1e-4)
    assert np.allclose(centre, centre.T) and np.allclose(centre, centre[::-1, ::-1])
    assert np.all(smooth_images(np.zeros((1, 5, 5))) == 0)
    with pytest.raises(ValueError, match="shape"):
        smooth_images(np.zeros((5, 5)))


def test_shuffle_and_pad_keeps_the_real_rows_and_appends_zeros():
    constituents, n_constituents, *_ = random_jets()
    out = shuffle_and_pad(constituents, n_constituents, N_SLOTS + 4, np.random.default_rng(0))
    assert out.shape == (len(constituents), N_SLOTS + 4, 4)
    for jet, n in enumerate(n_constituents):
        assert np.all(out[jet, n:] == 0)
        assert sorted(map(tuple, out[jet, :n])) == sorted(map(tuple, constituents[jet, :n]))
    with pytest.raises(ValueError):
        shuffle_and_pad(constituents, n_constituents, N_SLOTS - 1, np.random.default_rng(0))


def test_scaling_uses_real_entries_and_keeps_padding_zero():
    constituents, n_constituents, jet_pt, jet_eta, jet_phi = random_jets()
    features = particle_features(constituents, n_constituents, jet_pt, jet_eta, jet_phi)
    mask = constituent_mask(n_constituents, N_SLOTS)
    scaling = feature_scaling(features, mask)
    scaled = standardize(features, mask, scaling)
    assert np.all(scaled[~mask] == 0)
    assert np.allclose(scaled[mask].mean(axis=0), 0, atol=1e-5) and np.allclose(
        scaled[mask].std(axis=0), 1, atol=1e-4
    )
