"""The inputs of a level-1 trigger network (lesson 06).

A level-1 trigger sees its objects as fixed-point numbers in hardware units, not as standardized
floats, and has no time for per-column scaling with a mask. The course's trigger networks therefore
read each event's 19 objects (MET, 4 electrons, 4 muons, 10 jets; ``data_fetch.cms_ad``) as
(pT / 100 GeV, eta, delta-phi to the leading jet), with padded slots at 0, on the grid of
``INPUT_BITS`` bits of which ``INPUT_INTEGER_BITS`` are integer bits (plus the sign).
The lecture and the exercise's grader use this one definition.
"""

import numpy as np

from data_fetch.cms_ad import SLOT_RANGES

PT_UNIT_GEV = 100.0
# quantized_bits(14, 7): a sign, 7 integer and 6 fractional bits, i.e. ap_fixed<14, 8>: steps of
# 1/64 (1.6 GeV in pT, 0.016 in eta and phi) up to 128 (12.8 TeV: no event saturates).
INPUT_BITS, INPUT_INTEGER_BITS = 14, 7
N_INPUTS = 19 * 3


def trigger_inputs(objects) -> np.ndarray:
    """Flat trigger inputs of events.

    Args:
        objects: array (n_events, 19, 3) of (pT [GeV], eta, phi) per slot, zero-padded (``cms_ad``).

    Returns:
        float32 array (n_events, 57): per slot pT / 100 GeV, eta, and phi minus the leading jet's phi
        wrapped to [-pi, pi]; padded slots are 0. Not yet on the fixed-point grid: the network's first
        quantizer puts it there, as the trigger's input registers would.
    """
    objects = np.asarray(objects, dtype=np.float64)
    if objects.ndim != 3 or objects.shape[1:] != (19, 3):
        raise ValueError(f"expected cms_ad objects of shape (n_events, 19, 3), got {objects.shape}")
    is_real = objects[..., 0] > 0
    leading_jet_phi = objects[:, SLOT_RANGES["jet"][0], 2:3]
    delta_phi = np.angle(
        np.exp(1j * (objects[..., 2] - leading_jet_phi))
    )  # rotation symmetry: keep phi differences
    inputs = np.stack([objects[..., 0] / PT_UNIT_GEV, objects[..., 1], delta_phi], axis=-1)
    inputs[~is_real] = 0.0
    return inputs.reshape(len(objects), N_INPUTS).astype(np.float32)


def scalar_ht(objects) -> np.ndarray:
    """H_T in GeV: the scalar sum of the jets' pT, the classic level-1 baseline (lesson 06)."""
    objects = np.asarray(objects)
    first, size = SLOT_RANGES["jet"]
    return objects[:, first : first + size, 0].sum(axis=1)
