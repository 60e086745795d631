"""Data for the course: one call for any lesson's dataset.

    >>> import data_fetch
    >>> data = data_fetch.load("cms_ad", n_events=20_000, seed=1)   # doctest: +SKIP
    >>> data["objects"].shape                                        # doctest: +SKIP
    (20000, 19, 3)

Sources:

* ``"pythia"``: the offline default. Pythia 8 generates the processes, FastJet clusters
  jets, and a simple parametric detector model smears them (see ``data_fetch.pythia_source``).
* ``"opendata"``: the real CMS simulation, downloaded from the CERN Open Data portal and read
  with uproot (see ``data_fetch.opendata``).
* ``"auto"``: ``opendata`` if the portal answers within a few seconds, otherwise ``pythia``;
  ``pythia`` straight away for datasets that exist only offline (e.g. ``reweighting``).

Every result is cached (``$MLHEP_DATA_DIR`` or the user cache folder) under a key that
covers the dataset, source, size, seed and every generator setting.
"""

from __future__ import annotations

from .dataset import Dataset, info, list_datasets, load
from .errors import DataFetchError, SourceUnavailableError, UnknownDatasetError

__all__ = [
    "Dataset",
    "DataFetchError",
    "SourceUnavailableError",
    "UnknownDatasetError",
    "info",
    "list_datasets",
    "load",
]
