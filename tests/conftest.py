"""Fixtures shared by the test modules."""

import pytest


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data cache for one test (MLHEP_DATA_DIR)."""
    monkeypatch.setenv("MLHEP_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"
