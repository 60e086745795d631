"""The environment: one source of versions (pyproject.toml), a lock of the whole environment
(requirements.lock) that agrees with it, and the installed set matches both."""

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
FIRST_PARTY = {
    "autograder",
    "mlhep",
    "data_fetch",
    "browser",
    "notebook_expectations",
    "dataset_helpers",
    "hostile",
    "hostile_held_out",
    "conftest",
    "test_grading",  # its class-making helpers, which test_grading_cluster and test_grading_evening share
    "test_formgrader",  # its hostile notebook, which test_grading_evening hands in
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict:
    """{distribution: version} of requirements.lock, and the lines of each entry."""
    text = (REPO / "requirements.lock").read_text()
    return {normalized(name): pinned for name, pinned in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


def pyproject_pins() -> dict:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.split("==") for d in deps)


def test_every_dependency_is_pinned_exactly():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    loose = [d for d in deps if "==" not in d]
    assert not loose, f"pin these with == in pyproject.toml: {loose}"


def test_environment_yml_matches_pyproject():
    text = (REPO / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*python=3\.11\s*$", text, re.M), "environment.yml must ask for python=3.11"
    env_pins = dict(re.findall(r"^\s+-\s+([A-Za-z0-9_.\-]+)==(\S+)\s*$", text, re.M))
    assert env_pins == pyproject_pins(), (
        "environment.yml and pyproject.toml disagree; copy the pins from pyproject.toml"
    )


def test_the_lock_holds_every_pin_of_pyproject_with_hashes():
    locked = lock_pins()
    differ = {
        name: (pinned, locked.get(normalized(name)))
        for name, pinned in pyproject_pins().items()
        if locked.get(normalized(name)) != pinned
    }
    assert not differ, (
        f"requirements.lock disagrees with pyproject.toml (pinned, locked): {differ}; run `bash run.sh lock`"
    )
    entries = re.split(r"\n(?=[A-Za-z0-9])", (REPO / "requirements.lock").read_text().split("\n", 2)[2])
    unhashed = [entry.split()[0] for entry in entries if "==" in entry and "--hash=sha256:" not in entry]
    assert not unhashed, f"entries of requirements.lock without hashes: {unhashed}"
    assert len(locked) > 100, "the lock must hold the whole environment, not only the direct pins"


def test_every_package_the_course_imports_is_declared():
    # Packages the code imports must be pinned in pyproject.toml, not only arrive through another's
    # dependencies (where an update of that other package could drop or move them).
    modules = set()
    sources = [
        p.read_text()
        for folder in ("autograder", "mlhep", "data_fetch", "tests")
        for p in (REPO / folder).rglob("*.py")
    ]
    for path in [*(REPO / "course").glob("*.ipynb"), *(REPO / "solutions").rglob("*.ipynb")]:
        sources += [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    declared = {normalized(name) for name in pyproject_pins()}
    distributions = packages_distributions()
    undeclared = sorted(
        module
        for module in modules - FIRST_PARTY - set(sys.stdlib_module_names)
        if not {normalized(d) for d in distributions.get(module, [module])} & declared
    )
    assert not undeclared, f"declare these in pyproject.toml (the modules' distributions, pinned): {undeclared}"


def test_installed_versions_match_the_lock():
    wrong = {}
    for name, pinned in {**lock_pins(), **pyproject_pins()}.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, (
        f"installed versions differ from requirements.lock (pinned, installed): {wrong}; run `bash run.sh setup`"
    )


def test_python_is_3_11():
    assert sys.version_info[:2] == (3, 11)


def test_the_version_is_the_changelogs_newest():
    newest = re.search(r"^## (\d+\.\d+\.\d+)", (REPO / "CHANGELOG.md").read_text(), re.M)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert newest and newest.group(1) == project, "add a section for this version to CHANGELOG.md"
