"""Every notebook: committed clean, has a parameters cell, runs at CI scale, records good figures."""

import time
from pathlib import Path

import nbformat
import pytest

from mlhep.figures import read_figures
from mlhep.notebooks import REPO, course_notebooks, run_notebook

from notebook_expectations import EXPECTATIONS, MAX_SECONDS_PER_NOTEBOOK

ALL_COMMITTED = sorted(
    p
    for folder in ("course", "solutions", "exercises")
    for p in (REPO / folder).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)
RUNNABLE = course_notebooks()


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_notebooks_are_found():
    assert any(p.parent.name == "course" for p in RUNNABLE) and any("solutions" in p.parts for p in RUNNABLE)


@pytest.mark.parametrize("path", ALL_COMMITTED, ids=rel)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{rel(path)} has outputs or execution counts in cells {dirty}; clear them before committing"


@pytest.mark.parametrize("path", RUNNABLE, ids=rel)
def test_has_parameters_cell_and_course_kernel(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{rel(path)} needs exactly one cell tagged 'parameters'"
    assert nb.metadata.kernelspec.name == "mlhep"


#: Seconds each notebook took in this session's run (the perf test below reads them).
SECONDS: dict[str, float] = {}


def run_at_ci_scale(path: Path, executed_notebooks: Path) -> Path:
    expected = EXPECTATIONS.get(rel(path))
    assert expected is not None, (
        f"add the CI parameters and expected figures of {rel(path)} to tests/notebook_expectations.py"
    )
    start = time.perf_counter()
    # Kept for the session: tests/test_site.py builds the course's website from these copies.
    executed = run_notebook(path, executed_notebooks / rel(path), expected["parameters"])
    SECONDS[rel(path)] = time.perf_counter() - start
    return executed


@pytest.mark.notebooks
@pytest.mark.parametrize("path", RUNNABLE, ids=rel)
def test_runs_at_ci_scale_and_records_expected_figures(path, executed_notebooks):
    expected = EXPECTATIONS.get(rel(path))
    executed = run_at_ci_scale(path, executed_notebooks)
    figures = read_figures(executed)
    problems = []
    for name, want in expected["figures"].items():
        got = figures.get(name)
        if got is None:
            problems.append(f"{name}: not recorded")
        elif isinstance(want, tuple):
            if not (isinstance(got, (int, float)) and want[0] <= got <= want[1]):
                problems.append(f"{name} = {got}, expected in [{want[0]}, {want[1]}]")
        elif got != want:
            problems.append(f"{name} = {got!r}, expected {want!r}")
    assert not problems, f"{rel(path)}: " + "; ".join(problems)


@pytest.mark.notebooks
@pytest.mark.perf
@pytest.mark.parametrize("path", RUNNABLE, ids=rel)
def test_runs_at_ci_scale_within_its_time(path, executed_notebooks):
    # The run of the test above, timed; run here only when this test runs without it (-m perf).
    if rel(path) not in SECONDS:
        run_at_ci_scale(path, executed_notebooks)
    seconds = SECONDS[rel(path)]
    assert seconds < MAX_SECONDS_PER_NOTEBOOK, f"{rel(path)} took {seconds:.0f} s at CI scale"
