"""Helpers shared by the tests of the offline datasets."""

import awkward as ak
import numpy as np

from data_fetch import cache, pythia_source


def particle_batch(events):
    """A batch of events given as lists of (px, py, pz, E, pdg id), as the builders receive it."""
    columns = {k: [[p[i] for p in event] for event in events]
               for i, k in enumerate(("px", "py", "pz", "E", "id"))}
    return ak.zip({k: ak.values_astype(ak.Array(v), np.int32 if k == "id" else np.float64)
                   for k, v in columns.items()})


def key(spec, n=10_000, seed=0):
    """The cache key of ``n`` events of ``spec`` from the offline source."""
    return cache.cache_key(pythia_source.cache_description(spec, n, seed))
