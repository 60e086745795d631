"""Held-out samples of a grading run: the grader's secret (see mlhep.held_out for the tests' side)."""

from __future__ import annotations

import ast
import json
import os
import secrets
from pathlib import Path

import nbformat

from .. import sandbox
from ..course import SOLUTIONS_DIR, AutograderError, UsageError

HELD_OUT_RECORD = "held_out.json"  # in the output folder: the seed and samples of the run


def grader_cache_dir() -> Path:
    """The grader's own data cache (``$MLHEP_GRADER_CACHE``, else the user cache folder
    ``mlhep-course-grader``): held-out samples live here, out of the students' kernels' reach."""
    import platformdirs

    folder = os.environ.get("MLHEP_GRADER_CACHE") or platformdirs.user_cache_dir("mlhep-course-grader")
    return Path(folder).expanduser().resolve()


def held_out_samples(assignment: str) -> list[tuple[str, int]]:
    """(dataset, n_events) of every ``held_out_sample("NAME"[, n_events=N])`` call in the assignment's
    test cells (found in their source, so the tests alone say what the grader must prepare; without
    ``n_events``, the size of the manifest's held-out sample of NAME)."""
    from data_fetch import DataFetchError, manifest  # numpy: only when a run needs samples

    found = set()
    for path in sorted((SOLUTIONS_DIR / assignment).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or "held_out_sample" not in cell.source:
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) == "held_out_sample"
                ):
                    arguments: dict[str | None, ast.expr | None] = {
                        "name": node.args[0] if node.args else None,
                        "n_events": node.args[1] if len(node.args) > 1 else None,
                    }
                    arguments.update({keyword.arg: keyword.value for keyword in node.keywords})
                    name_node, size_node = arguments["name"], arguments["n_events"]
                    try:
                        if name_node is None:
                            raise ValueError("no dataset name")
                        name = ast.literal_eval(name_node)
                        n_events = (
                            manifest.held_out_size(name) if size_node is None else ast.literal_eval(size_node)
                        )
                    except (ValueError, TypeError, DataFetchError) as error:
                        raise AutograderError(
                            f"{path.name}: held_out_sample must be called with a literal "
                            f"dataset name of the manifest and a literal n_events, if any "
                            f"({error})"
                        ) from None
                    found.add((name, n_events))
    return sorted(found)


def prepare_held_out(
    assignment: str, out_dir: Path, seed: int | None = None, scheduler: str | None = None
) -> dict | None:
    """Generate the assignment's held-out samples for this run into the grader's cache (on the Dask
    scheduler ``scheduler`` if given, see :func:`data_fetch.load`).

    The seed is drawn at random unless given; it and the samples are recorded in
    ``OUT/held_out.json``. Neither the seed nor the cache is visible in a student's sandbox
    (checked here), so no kernel can read or regenerate the events whose labels judge it.
    """
    import data_fetch  # numpy and the generators: only when a run needs samples
    from data_fetch import cache as data_cache

    samples = held_out_samples(assignment)
    if not samples:
        return None
    if seed is None:
        seed = secrets.randbelow(2**63)
    elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"the held-out seed must be a non-negative integer, got {seed!r}")
    cache = grader_cache_dir()
    if (visible := sandbox.visible_folder(cache)) is not None:
        raise UsageError(
            f"the grader's cache {cache} lies in {visible}, which students' kernels can read; "
            "set MLHEP_GRADER_CACHE to a folder outside it"
        )
    files = []
    for name, n_events in samples:
        print(f"autograder: held-out sample {name} ({n_events} events) for this run")
        dataset = data_fetch.load(
            name, n_events=n_events, seed=seed, source="pythia", cache_dir=cache, scheduler=scheduler
        )
        path = data_cache.entry_path(name, "pythia", dataset.metadata["cache_key"], root=cache)
        files.append(str(path.relative_to(cache)))
    record = {
        "seed": seed,
        "cache": str(cache),
        "samples": [list(sample) for sample in samples],
        "files": files,  # in the cache, for the workers of a Dask cluster (autograder.batch.cluster)
    }
    (out_dir / HELD_OUT_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record
