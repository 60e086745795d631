"""Fixtures shared by the test modules."""

import pytest

#: The held-out seed of the grading tests that are not about it: fixed, so that the grader's cache
#: generates each held-out sample once per machine (a real run draws one at random).
TEST_HELD_OUT_SEED = 7


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data cache for one test (MLHEP_DATA_DIR)."""
    monkeypatch.setenv("MLHEP_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"
