"""Jet constituents as network inputs: masks, per-particle and pairwise features, jet images.

Introduced in lesson 04 (jet taggers); lesson 05 (normalized autoencoders) trains on
:func:`jet_images` smoothed by :func:`smooth_images`. The networks stay in the notebooks; this module
only turns the ``top_tagging`` arrays into their inputs.

Conventions (those of the ``top_tagging`` dataset):

* ``constituents`` is ``(n_jets, P, 4)`` with columns ``(pT [GeV], eta, phi [rad], E [GeV])``,
  pT-ordered and zero-padded; ``n_constituents`` says how many rows of each jet are real, so the
  mask is ``arange(P) < n_constituents``. Padded rows are all zero and stay zero in every output.
* Angles are measured from the jet axis: ``delta_eta = eta - jet_eta`` and
  ``delta_phi = phi - jet_phi`` wrapped into ``(-pi, pi]``.
* Every function is vectorized over jets and independent of the order of the real constituents
  (up to the order of the output rows, which follows the input rows).
"""

from __future__ import annotations

import numpy as np

#: Per-particle features of :func:`particle_features`, in column order.
PARTICLE_FEATURES = ("log_pt", "log_e", "log_pt_rel", "log_e_rel", "delta_eta", "delta_phi", "delta_r")
#: Pairwise features of :func:`pair_features`, in the order of the Particle Transformer.
PAIR_FEATURES = ("ln_kt", "ln_z", "ln_delta", "ln_m2")


def wrap_phi(phi):
    """Angle wrapped into (-pi, pi]."""
    phi = np.asarray(phi)
    wrapped = np.mod(phi + np.pi, 2 * np.pi) - np.pi  # [-pi, pi)
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def constituent_mask(n_constituents, n_slots: int) -> np.ndarray:
    """Boolean ``(n_jets, n_slots)``: True for the real constituents, False for padded rows."""
    return np.arange(n_slots)[None, :] < np.asarray(n_constituents)[:, None]


def relative_coordinates(constituents, n_constituents, jet_eta, jet_phi) -> np.ndarray:
    """``(n_jets, P, 2)`` float32: (delta_eta, delta_phi) of each constituent from the jet axis.

    delta_phi is wrapped into (-pi, pi], so jets near phi = +-pi are not split in two. Padded rows are 0,
    which is the jet axis: a network must use the mask, not the coordinates, to ignore them.
    """
    constituents = np.asarray(constituents)
    mask = constituent_mask(n_constituents, constituents.shape[1])
    delta_eta = constituents[..., 1] - np.asarray(jet_eta)[:, None]
    delta_phi = wrap_phi(constituents[..., 2] - np.asarray(jet_phi)[:, None])
    return np.where(mask[..., None], np.stack([delta_eta, delta_phi], axis=-1), 0.0).astype("float32")


def particle_features(constituents, n_constituents, jet_pt, jet_eta, jet_phi) -> np.ndarray:
    """``(n_jets, P, 7)`` float32 per-particle inputs, columns :data:`PARTICLE_FEATURES`.

    ``log pT``, ``log E``, ``log(pT / pT_jet)``, ``log(E / E_jet)``, ``delta_eta``, ``delta_phi``,
    ``delta_R`` (the inputs of the Particle Transformer's top-tagging setup, unscaled). ``E_jet`` is the
    sum of the energies of the real constituents given (at most P of them). Padded rows are exactly 0.
    """
    constituents = np.asarray(constituents, dtype=np.float64)
    mask = constituent_mask(n_constituents, constituents.shape[1])
    pt, energy = constituents[..., 0], constituents[..., 3]
    jet_energy = np.sum(np.where(mask, energy, 0.0), axis=1, keepdims=True)
    safe = np.where(mask, 1.0, 0.0)  # padded rows: log of 1, then zeroed
    coordinates = relative_coordinates(constituents, n_constituents, jet_eta, jet_phi).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = [
            np.log(np.where(mask, pt, 1.0)),
            np.log(np.where(mask, energy, 1.0)),
            np.log(np.where(mask, pt / np.asarray(jet_pt, dtype=np.float64)[:, None], 1.0)),
            np.log(np.where(mask, energy / np.where(jet_energy > 0, jet_energy, 1.0), 1.0)),
            coordinates[..., 0],
            coordinates[..., 1],
            np.hypot(coordinates[..., 0], coordinates[..., 1]),
        ]
    return (np.stack(columns, axis=-1) * safe[..., None]).astype("float32")


def feature_scaling(features, mask) -> tuple[np.ndarray, np.ndarray]:
    """Mean and width of each feature column over the REAL entries only (padded entries would pull the
    mean towards 0 and depend on how much padding there is).

    Args:
        features: ``(..., F)``, e.g. particle features ``(n_jets, P, F)`` or pair features ``(n_jets, P, P, F)``.
        mask: boolean array of the leading shape of ``features``: True for real entries.

    Returns:
        ``(mean, std)``, each of shape ``(F,)``; a constant column gets width 1.
    """
    real = np.asarray(features)[np.asarray(mask, dtype=bool)]
    mean, std = real.mean(axis=0), real.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def standardize(features, mask, scaling) -> np.ndarray:
    """``(features - mean) / std`` with ``scaling = (mean, std)`` from :func:`feature_scaling` (computed on the
    training jets), float32; entries where ``mask`` is False stay exactly 0."""
    mean, std = scaling
    scaled = (np.asarray(features) - mean) / std
    return np.where(np.asarray(mask, dtype=bool)[..., None], scaled, 0.0).astype("float32")


def _rapidity(pt, eta, energy):
    pz = pt * np.sinh(eta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * np.log(np.maximum(energy + pz, 1e-30) / np.maximum(energy - pz, 1e-30))


def pair_features(constituents, n_constituents, eps: float = 1e-8, chunk: int = 256) -> np.ndarray:
    """``(n_jets, P, P, 4)`` float32 pairwise features of the Particle Transformer (arXiv:2202.03772).

    For constituents i, j with transverse momenta pT, rapidities y and azimuths phi:

    * ``Delta = sqrt((y_i - y_j)^2 + (phi_i - phi_j)^2)``, the azimuth difference wrapped into (-pi, pi];
    * ``ln kT = ln max(min(pT_i, pT_j) Delta, eps)``;
    * ``ln z = ln max(min(pT_i, pT_j) / max(pT_i + pT_j, eps), eps)``;
    * ``ln Delta = ln max(Delta, eps)``;
    * ``ln m^2 = ln max((E_i + E_j)^2 - |p_i + p_j|^2, eps)``;

    in the order :data:`PAIR_FEATURES`, computed in float64. The diagonal (i = j) is included, as in the
    Particle Transformer. A pair with a padded member is set to exactly 0 (its formula would give
    ln eps = -18.4): the attention must mask it with the key padding mask, not rely on its value.
    Jets are processed ``chunk`` at a time to bound the memory of the float64 intermediates.
    """
    constituents = np.asarray(constituents)
    n_jets, n_slots = constituents.shape[:2]
    out = np.zeros((n_jets, n_slots, n_slots, 4), dtype="float32")
    mask = constituent_mask(n_constituents, n_slots)
    for start in range(0, n_jets, chunk):
        c = constituents[start : start + chunk].astype(np.float64)
        pt, eta, phi, energy = (c[..., k] for k in range(4))
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        y = _rapidity(pt, eta, energy)
        delta = np.hypot(y[:, :, None] - y[:, None, :], wrap_phi(phi[:, :, None] - phi[:, None, :]))
        pt_min = np.minimum(pt[:, :, None], pt[:, None, :])
        pt_sum = pt[:, :, None] + pt[:, None, :]
        m2 = (
            (energy[:, :, None] + energy[:, None, :]) ** 2
            - (px[:, :, None] + px[:, None, :]) ** 2
            - (py[:, :, None] + py[:, None, :]) ** 2
            - (pz[:, :, None] + pz[:, None, :]) ** 2
        )
        features = np.stack(
            [
                np.log(np.maximum(pt_min * delta, eps)),
                np.log(np.maximum(pt_min / np.maximum(pt_sum, eps), eps)),
                np.log(np.maximum(delta, eps)),
                np.log(np.maximum(m2, eps)),
            ],
            axis=-1,
        )
        m = mask[start : start + chunk]
        pair_mask = m[:, :, None] & m[:, None, :]
        out[start : start + chunk] = np.where(pair_mask[..., None], features, 0.0)
    return out


def jet_images(
    constituents,
    n_constituents,
    n_pixels: int = 40,
    half_width: float = 0.8,
    rotate: bool = True,
    flip: bool = True,
) -> np.ndarray:
    """``(n_jets, n_pixels, n_pixels)`` float32 jet images, each pixel the fraction of the jet's pT in it.

    Preprocessing (per jet, as in the jet-image literature, e.g. Macaluso and Shih arXiv:1803.00107):

    1. **centre**: coordinates (eta, phi) are taken relative to the pT-weighted centroid of the real
       constituents (phi first measured from the hardest constituent and wrapped, so that jets near
       phi = +-pi are not split);
    2. **rotate** (``rotate=True``): the principal axis of the pT-weighted (eta, phi) covariance is turned
       onto the horizontal axis, so the two hardest prongs of a top or W usually lie along x;
    3. **flip** (``flip=True``): mirrored in x so that the half with more pT lies at x > 0 (the hardest
       prong on the right), and in y so that the pT-weighted skewness sum(pT y^3) is positive (a third
       prong off the axis goes up; the halves in y are too balanced to decide after the rotation).

    The image spans ``[-half_width, half_width]`` in both directions (x horizontal, the first array
    axis is y from bottom to top, so ``plt.imshow(image, origin="lower", extent=...)`` draws it upright).
    Each image is normalised to sum to 1 over the constituents that fall inside it (an image with no
    constituent inside stays all zero). Padded rows are ignored, and the result does not depend on the
    order of the constituents. 40 x 40 over +-0.8 gives pixels of 0.04, about the size of a calorimeter
    cell.
    """
    constituents = np.asarray(constituents, dtype=np.float64)
    n_jets, n_slots = constituents.shape[:2]
    mask = constituent_mask(n_constituents, n_slots)
    pt = np.where(mask, constituents[..., 0], 0.0)
    eta, phi = constituents[..., 1], constituents[..., 2]
    hardest = np.take_along_axis(phi, np.argmax(pt, axis=1)[:, None], axis=1)
    phi = wrap_phi(phi - hardest)
    total = np.maximum(pt.sum(axis=1, keepdims=True), 1e-30)
    x = eta - (pt * eta).sum(axis=1, keepdims=True) / total
    y = phi - (pt * phi).sum(axis=1, keepdims=True) / total
    if rotate:
        sxx, syy, sxy = ((pt * a * b).sum(axis=1) for a, b in ((x, x), (y, y), (x, y)))
        angle = 0.5 * np.arctan2(2 * sxy, sxx - syy)[:, None]  # direction of the major axis
        cos, sin = np.cos(angle), np.sin(angle)
        x, y = x * cos + y * sin, -x * sin + y * cos
    if flip:
        x = x * np.where((pt * (x > 0)).sum(axis=1) >= (pt * (x < 0)).sum(axis=1), 1.0, -1.0)[:, None]
        y = y * np.where((pt * y**3).sum(axis=1) >= 0, 1.0, -1.0)[:, None]
    scale = n_pixels / (2 * half_width)
    column = np.floor((x + half_width) * scale).astype(np.int64)
    row = np.floor((y + half_width) * scale).astype(np.int64)
    inside = mask & (column >= 0) & (column < n_pixels) & (row >= 0) & (row < n_pixels)
    jet = np.broadcast_to(np.arange(n_jets)[:, None], mask.shape)
    images = np.zeros((n_jets, n_pixels * n_pixels))
    np.add.at(images, (jet[inside], row[inside] * n_pixels + column[inside]), pt[inside])
    sums = images.sum(axis=1, keepdims=True)
    images = np.where(sums > 0, images / np.where(sums > 0, sums, 1.0), 0.0)
    return images.reshape(n_jets, n_pixels, n_pixels).astype("float32")


def smooth_images(images, sigma: float = 2.0) -> np.ndarray:
    """Jet images convolved with a Gaussian of ``sigma`` pixels, each renormalised to its old sum.

    A particle-level jet image is sparse (a QCD jet lights some 30 of 1600 pixels), and a squared
    reconstruction error between sparse images mostly counts how many pixels are lit. Smoothing, as
    in the normalized-autoencoder study of Dillon et al. (arXiv:2206.14225, sigma = 2 pixels on
    40 x 40 images), spreads each particle's pT over its neighbours, so that images of similar jets
    are close in pixel space. The filter treats the outside of the image as empty; the pT that would
    leak out at the edges is put back by the renormalisation. ``images`` is ``(n, H, W)``.
    """
    from scipy.ndimage import gaussian_filter

    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"expected images of shape (n, H, W), got {images.shape}")
    smoothed = gaussian_filter(images, sigma=(0, sigma, sigma), mode="constant", truncate=4.0)
    old, new = images.sum(axis=(1, 2), keepdims=True), smoothed.sum(axis=(1, 2), keepdims=True)
    smoothed = np.where(new > 0, smoothed * old / np.where(new > 0, new, 1.0), 0.0)
    return smoothed.astype("float32")


def shuffle_and_pad(array, n_constituents, n_slots: int, rng) -> np.ndarray:
    """A copy of a per-particle array ``(n_jets, P, ...)`` with the real rows of each jet permuted at random
    and extra zero rows appended up to ``n_slots`` (>= P): the same jets, as a permutation- and
    padding-invariant network must see them. Pass the same ``rng`` state to permute several arrays
    alike (e.g. features and coordinates: draw ``rng = np.random.default_rng(seed)`` anew for each).
    """
    array = np.asarray(array)
    n_jets, n_old = array.shape[:2]
    if n_slots < n_old:
        raise ValueError(f"n_slots = {n_slots} is smaller than the current {n_old} slots")
    mask = constituent_mask(n_constituents, n_old)
    keys = np.where(mask, rng.random(mask.shape), np.inf)  # padded rows stay at the end
    order = np.argsort(keys, axis=1, kind="stable")
    shuffled = np.take_along_axis(array, order.reshape(order.shape + (1,) * (array.ndim - 2)), axis=1)
    out = np.zeros((n_jets, n_slots) + array.shape[2:], dtype=array.dtype)
    out[:, :n_old] = shuffled
    return out
