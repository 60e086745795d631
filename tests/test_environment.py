"""The environment: one source of versions (pyproject.toml), and the installed set matches it."""

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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
        "environment.yml and pyproject.toml disagree; copy the pins from pyproject.toml")


def test_installed_versions_match_the_pins():
    wrong = {}
    for name, pinned in pyproject_pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, (f"installed versions differ from pyproject.toml (pinned, installed): {wrong}; "
                       "run `bash run.sh setup`")


def test_python_is_3_11():
    assert sys.version_info[:2] == (3, 11)
