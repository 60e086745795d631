"""`load()`: resolve the source, serve from the cache or produce and cache."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cache
from .errors import DataFetchError
from .registry import DATASETS, DatasetSpec, get_spec

SOURCES = ("auto", "pythia", "opendata")


@dataclass
class Dataset:
    """Arrays of one dataset plus where they came from. ``data["objects"]`` gives an array."""

    name: str
    source: str
    arrays: dict
    metadata: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def select(self, rows) -> Dataset:
        """The events ``rows`` (a boolean mask or indices) as a dataset of their own, same source and metadata."""
        rows = np.asarray(rows)
        if rows.dtype == bool and rows.shape != (len(self),):
            raise ValueError(f"a mask of {len(self)} events is needed, got shape {rows.shape}")
        return Dataset(
            self.name, self.source, {key: array[rows] for key, array in self.arrays.items()}, self.metadata
        )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.arrays.items())
        return f"Dataset({self.name!r}, source={self.source!r}, {len(self)} events: {shapes})"


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def info(name: str) -> str:
    """A human-readable description of dataset ``name`` and its schema."""
    spec = get_spec(name)
    lines = [f"{spec.name}: {spec.description}", "", "arrays:"]
    width = max(10, *(len(array) for array in spec.schema))
    for array, schema in spec.schema.items():
        lines.append(f"  {array:{width}s} {schema.dtype:8s} {str(schema.shape):14s} {schema.description}")
    lines += ["", f"default n_events: {spec.default_n_events}", f"sources: {', '.join(spec.sources)}"]
    if spec.notes:
        lines += ["", spec.notes]
    return "\n".join(lines)


def _check_arguments(name: str, source: str, n_events: int, seed: int) -> None:
    get_spec(name)
    if source not in SOURCES:
        raise DataFetchError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events <= 0:
        raise DataFetchError(f"n_events must be a positive integer, got {n_events!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataFetchError(f"seed must be a non-negative integer, got {seed!r}")


def resolve_source(source: str, spec: DatasetSpec | None = None) -> tuple[str, str]:
    """Return (source, reason). ``auto`` asks the portal with a short timeout.

    With ``spec``, the source must be one of ``spec.sources``; for a dataset without an
    ``opendata`` source, ``auto`` means ``pythia`` and the portal is not asked.
    """
    if spec is not None and source != "auto" and source not in spec.sources:
        choices = " or ".join(f'"{s}"' for s in (*spec.sources, "auto"))
        raise DataFetchError(f"dataset {spec.name!r} has no {source} source; use source={choices}")
    if source != "auto":
        return source, "requested explicitly"
    if spec is not None and "opendata" not in spec.sources:
        return "pythia", "the only source of this dataset"
    from . import opendata

    ok, why = opendata.portal_reachable()
    if ok:
        return "opendata", f"the CERN Open Data portal answered ({why})"
    return "pythia", f"the CERN Open Data portal is not reachable ({why}); generating offline"


def load(
    name: str,
    *,
    n_events: int | None = None,
    seed: int = 0,
    source: str = "auto",
    progress: bool = True,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> Dataset:
    """Return dataset ``name`` with ``n_events`` events from ``source``, cached on disk.

    Args:
        name: a dataset of the registry (``python -m data_fetch list``).
        n_events: number of events; the dataset's default if None.
        seed: random seed (event generation and shuffling); same seed, same events.
        source: ``"auto"`` (default), ``"pythia"`` or ``"opendata"``.
        progress: show tqdm progress bars.
        cache_dir: cache folder to use instead of ``$MLHEP_DATA_DIR`` (the grader keeps its
            held-out samples apart from the data that students' kernels can read).
        workers: worker processes of the local Dask cluster that produces the events (one per core
            if None; 1 works in this process, without a cluster).
        scheduler: address of a Dask scheduler to run the production on instead (``$MLHEP_DASK_SCHEDULER``
            if None); see :mod:`data_fetch.cluster`. Neither changes the arrays, nor the cache key.

    Returns:
        A :class:`Dataset`; its ``metadata`` says which source made it and when.
    """
    spec = get_spec(name)
    n_events = spec.default_n_events if n_events is None else n_events
    _check_arguments(name, source, n_events, seed)
    chosen, reason = resolve_source(source, spec)
    print(f"data_fetch: {name} from source '{chosen}' ({reason})")
    if chosen == "pythia":
        from . import pythia_source as producer
    else:
        from . import opendata as producer

    key = cache.cache_key(producer.cache_description(spec, n_events, seed))
    path = cache.entry_path(name, chosen, key, root=cache_dir)
    if path.exists():
        try:
            arrays, metadata = cache.read_entry(path)
            return Dataset(name, chosen, arrays, metadata)
        except Exception as exc:  # damaged on disk (writes are atomic, disks and copies are not)
            print(
                f"data_fetch: the cached file {path} is unreadable ({type(exc).__name__}); "
                "removing it and producing the dataset again"
            )
            path.unlink(missing_ok=True)

    cache.ensure_writable(path.parent)
    start = time.perf_counter()
    arrays, metadata = producer.produce(
        spec, n_events, seed, progress=progress, workers=workers, scheduler=scheduler
    )
    metadata = {
        **metadata,
        "dataset": name,
        "source": chosen,
        "n_events": int(n_events),
        "seed": int(seed),
        "seconds": round(time.perf_counter() - start, 2),
        "cache_key": key,
    }
    cache.write_entry(path, arrays, metadata)
    return Dataset(name, chosen, arrays, metadata)
