"""Fixtures shared by the test modules."""

from pathlib import Path

import nbformat
import pytest

#: The held-out seed of the grading tests that are not about it: fixed, so that the grader's cache
#: generates each held-out sample once per machine (a real run draws one at random).
TEST_HELD_OUT_SEED = 7


@pytest.fixture(scope="session")
def executed_notebooks(tmp_path_factory) -> Path:
    """The notebooks this session executed, each at its repository-relative path (``course/...``,
    ``solutions/...``) as ``build/notebooks/`` holds them: test_notebooks.py writes them, and
    test_site.py (which runs after it) builds the site from them instead of running them again."""
    return tmp_path_factory.mktemp("executed-notebooks")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data cache for one test (MLHEP_DATA_DIR)."""
    monkeypatch.setenv("MLHEP_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def graded_outputs(out_dir: Path, student: str) -> str:
    """Everything the cells of the student's graded notebook printed, displayed or raised ('' if
    it has none): the text that hostile tests search for evidence of an attack."""
    texts = []
    for path in sorted((out_dir / "nbgrader" / "autograded" / student).rglob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                texts.append(output.get("text", ""))
                texts += [str(value) for value in output.get("data", {}).values()]
                texts += [output.get("evalue", ""), *output.get("traceback", [])]
    return "\n".join(texts)
