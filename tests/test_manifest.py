"""The manifest of samples (data_fetch/manifest.py) against every notebook, the tests and the grader:
a size or seed written anywhere else must be the manifest's."""

from __future__ import annotations

import ast
import contextlib

import nbformat
import pytest

from autograder.batch.held_out import held_out_samples
from autograder.course import find_assignments
from data_fetch import DataFetchError, list_datasets, manifest
from data_fetch.__main__ import main as data_fetch_main
from mlhep.notebooks import REPO

from notebook_expectations import EXPECTATIONS

NOTEBOOKS = sorted(
    p
    for folder in ("course", "solutions", "exercises")
    for p in (REPO / folder).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)


def rel(path) -> str:
    return str(path.relative_to(REPO))


def source_of(path) -> str:
    """The notebook's path as the manifest names it (an exercise by its solution, its one source)."""
    name = rel(path)
    return "solutions/" + name.removeprefix("exercises/") if name.startswith("exercises/") else name


def parameters_and_calls(path) -> tuple[dict, list[tuple[str, dict]]]:
    """The literal assignments of the notebook's parameters cell, and every data_fetch.load and
    held_out_sample call as (function, {argument: value}), names resolved from the parameters."""
    parameters, calls = {}, []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # an exercise's "YOUR CODE HERE" cell can be incomplete Python
            continue
        if "parameters" in cell.metadata.get("tags", []):
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and hasattr(node.targets[0], "id"):
                    with contextlib.suppress(ValueError):
                        parameters[node.targets[0].id] = ast.literal_eval(node.value)
        for node in ast.walk(tree):
            function = isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
            if function not in ("load", "held_out_sample"):
                continue
            if function == "load" and getattr(node.func, "value", None) is None:
                continue
            arguments = {"dataset": node.args[0]} if node.args else {}
            arguments.update({keyword.arg: keyword.value for keyword in node.keywords})
            resolved = {}
            for key, value in arguments.items():
                if isinstance(value, ast.Name):
                    assert value.id in parameters, (
                        f"{rel(path)}: {function}(...{key}={value.id}): {value.id} must be a parameter"
                    )
                    resolved[key] = parameters[value.id]
                else:
                    resolved[key] = ast.literal_eval(value)
            calls.append((function, resolved))
    return parameters, calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=rel)
def test_every_sample_a_notebook_loads_is_in_the_manifest(path):
    _, calls = parameters_and_calls(path)
    name = source_of(path)
    default_role = "lecture" if name.startswith("course/") else "exercise"
    for function, arguments in calls:
        dataset = arguments["dataset"]
        if function == "held_out_sample":
            entry = manifest.sample(dataset, "held_out")
            assert arguments.get("n_events", entry.n_events) == entry.n_events
            assert "seed" not in arguments, "a held-out sample's seed is the grader's, never the notebook's"
        else:
            entry = manifest.sample(dataset, default_role)
            got = (arguments.get("n_events"), arguments.get("seed", 0))
            assert got == (entry.n_events, entry.seed), (
                f"{rel(path)} loads {dataset} with (n_events, seed) {got}; the manifest's {default_role} "
                f"sample is {(entry.n_events, entry.seed)}: change one of them"
            )
        assert name in entry.used_by, f"add {name} to the used_by of the manifest's {entry.role} {dataset}"


def test_every_notebook_the_manifest_names_exists_and_loads_its_sample():
    for entry in manifest.SAMPLES:
        for name in entry.used_by:
            assert (REPO / name).is_file(), f"the manifest names {name}, which does not exist"
            function = "held_out_sample" if entry.role == "held_out" else "load"
            assert any(
                f == function and arguments["dataset"] == entry.dataset
                for f, arguments in parameters_and_calls(REPO / name)[1]
            ), f"{name} is listed for {entry.dataset} ({entry.role}) but never calls {function} on it"


def test_the_tests_inject_the_manifests_ci_samples():
    for name, expected in EXPECTATIONS.items():
        _, calls = parameters_and_calls(REPO / name)
        datasets = {arguments["dataset"] for function, arguments in calls if function == "load"}
        role = "ci" if name.startswith("course/") else "exercise"
        for dataset in datasets:
            entry = manifest.sample(dataset, role)
            injected = expected["parameters"]
            got = (injected.get("n_events", entry.n_events), injected.get("seed", entry.seed))
            assert got == (entry.n_events, entry.seed), (
                f"{name} runs in the tests at {got}, the manifest says {(entry.n_events, entry.seed)}"
            )
            assert name in entry.used_by


def test_the_grader_prepares_the_manifests_held_out_sizes():
    for assignment in find_assignments():
        for dataset, n_events in held_out_samples(assignment):
            assert n_events == manifest.held_out_size(dataset)


def test_held_out_samples_have_no_seed_in_the_manifest():
    # The grader's held-out seed is a secret drawn per run (the stand-ins are public, so never used there).
    held_out = [entry for entry in manifest.SAMPLES if entry.role == "held_out"]
    assert held_out and all(entry.seed is None for entry in held_out)
    assert set(manifest.STAND_IN_SEEDS) == {entry.dataset for entry in held_out}


def test_the_manifest_is_one_entry_per_dataset_and_role():
    keys = [(entry.dataset, entry.role) for entry in manifest.SAMPLES]
    assert len(keys) == len(set(keys))
    for entry in manifest.SAMPLES:
        assert entry.dataset in list_datasets() and entry.role in manifest.ROLES
        assert isinstance(entry.n_events, int) and entry.n_events > 0


def test_a_scale_fetches_each_distinct_sample_once():
    ci = manifest.course_samples("ci")
    # cms_ad's CI and exercise samples are the same 10 000 events: fetched once.
    assert [(entry.dataset, entry.n_events, seed) for entry, seed in ci if entry.dataset == "cms_ad"] == [
        ("cms_ad", 10_000, 0),
        ("cms_ad", 5_000, manifest.STAND_IN_SEEDS["cms_ad"]),
    ]
    lecture = {(entry.dataset, entry.n_events) for entry, _ in manifest.course_samples("lecture", "3")}
    assert lecture == {("dijet_resonance", 400_000), ("dijet_resonance", 40_000)}


def test_fetch_course_rejects_what_it_does_not_know(capsys):
    with pytest.raises(DataFetchError, match="unknown scale"):
        manifest.course_samples("huge")
    assert data_fetch_main(["fetch-course", "--scale", "ci", "--lesson", "42"]) == 2
    assert "no lesson 42 in the manifest; lessons: 00, 01, 02, 03" in capsys.readouterr().err
