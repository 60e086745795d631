"""The `cms_ad` layout: one fixed-size table of reconstructed objects per event.

Both sources (real CMS NanoAOD and the offline Pythia generation) build their
arrays through :func:`build_objects`, so they agree slot for slot.

Layout of ``objects`` (float32, shape ``(n_events, 19, 3)``):

====== ============ ===================================================
slots  object       features
====== ============ ===================================================
0      MET          (|pT^miss| in GeV, 0, phi)  -- eta is always 0
1-4    electrons    (pT in GeV, eta, phi), pT > 10 GeV, |eta| < 2.5
5-8    muons        (pT in GeV, eta, phi), pT > 10 GeV, |eta| < 2.4
9-18   jets         anti-kT R = 0.4, (pT in GeV, eta, phi), pT > 30 GeV, |eta| < 2.5
====== ============ ===================================================

Within each group the objects are ordered by decreasing pT; missing objects
are zero-padded, so a slot with pT == 0 is empty (MET is always filled).
This is the layout of the ADC2021 anomaly-detection challenge without its
redundant type column: the type is given by the slot (see ``SLOT_TYPES``).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

N_ELECTRONS = 4
N_MUONS = 4
N_JETS = 10
N_SLOTS = 1 + N_ELECTRONS + N_MUONS + N_JETS
FEATURES = ("pt", "eta", "phi")

#: Object type of each slot: "met", "electron", "muon" or "jet".
SLOT_TYPES = ("met",) + ("electron",) * N_ELECTRONS + ("muon",) * N_MUONS + ("jet",) * N_JETS
#: First slot of each object type, and how many slots it has.
SLOT_RANGES = {"met": (0, 1), "electron": (1, N_ELECTRONS), "muon": (5, N_MUONS), "jet": (9, N_JETS)}

#: Kinematic selection shared by both sources: (pT min in GeV, |eta| max).
SELECTION = {"electron": (10.0, 2.5), "muon": (10.0, 2.4), "jet": (30.0, 2.5)}

#: Process codes stored in the ``process`` array.
PROCESSES = {0: "QCD multijet", 1: "W(->lnu)+jets", 2: "Z/gamma*(->ll)+jets", 3: "bulk G*(2 TeV)->WW"}


def _pad_sorted(objects: ak.Array, n: int) -> np.ndarray:
    """Sort jagged (pt, eta, phi) records by pT, keep the first ``n``, zero-pad."""
    objects = objects[ak.argsort(objects.pt, axis=1, ascending=False)]
    out = np.zeros((len(objects), n, 3), dtype=np.float32)
    for k, field in enumerate(FEATURES):
        padded = ak.fill_none(ak.pad_none(objects[field], n, axis=1, clip=True), 0.0)
        out[:, :, k] = ak.to_numpy(padded).astype(np.float32)
    return out


def select(objects: ak.Array, kind: str) -> ak.Array:
    """Apply the shared kinematic selection of ``kind`` to jagged (pt, eta, phi) records."""
    pt_min, eta_max = SELECTION[kind]
    return objects[(objects.pt > pt_min) & (abs(objects.eta) < eta_max)]


def build_objects(met_pt, met_phi, electrons: ak.Array, muons: ak.Array, jets: ak.Array) -> np.ndarray:
    """Build the ``(n_events, 19, 3)`` object table.

    Args:
        met_pt, met_phi: per-event missing transverse momentum (GeV) and its azimuth.
        electrons, muons, jets: jagged records with fields ``pt``, ``eta``, ``phi``
            (already identified; the kinematic selection is applied here).

    Returns:
        float32 array of shape ``(n_events, 19, 3)`` in the layout of this module.
    """
    n_events = len(met_pt)
    table = np.zeros((n_events, N_SLOTS, 3), dtype=np.float32)
    table[:, 0, 0] = np.asarray(met_pt, dtype=np.float32)
    table[:, 0, 2] = np.asarray(met_phi, dtype=np.float32)
    for kind, group in (("electron", electrons), ("muon", muons), ("jet", jets)):
        start, size = SLOT_RANGES[kind]
        table[:, start : start + size] = _pad_sorted(select(group, kind), size)
    return table


def cocktail_weights(process, weight) -> np.ndarray:
    """Event weights for distributions and efficiencies: each process keeps its share of the sample.

    The offline QCD sample is generated with a pT-hat bias (``PhaseSpace:bias2Selection``, power 4,
    like CMS's "Flat" QCD samples): hard events are over-produced, and each event's ``weight``
    undoes that. Those weights are only meaningful *within* a process, so they are rescaled here to
    sum to the process's number of events: within QCD the spectrum becomes the physical one, while
    the shares of the processes stay the cocktail's (QCD 70%, W+jets 7%, Z+jets 3%, signal 20% in
    the offline source; not cross-section weighted). Processes generated without a bias have
    weight 1 and are unchanged.

    Args:
        process: the dataset's ``process`` array.
        weight: the dataset's ``weight`` array.

    Returns:
        float64 array of per-event weights.
    """
    process, weights = np.asarray(process), np.asarray(weight, dtype=np.float64).copy()
    if process.shape != weights.shape:
        raise ValueError(f"process and weight must have the same shape, got {process.shape} and {weights.shape}")
    for code in np.unique(process):
        in_process = process == code
        total = weights[in_process].sum()
        if not total > 0:
            raise ValueError(f"process {code}: its weights sum to {total}; they must be positive")
        weights[in_process] *= in_process.sum() / total
    return weights
