"""Held-out samples: the tests' side (mlhep.held_out) and the grader's (autograder.batch.held_out).
Fast: nothing here generates events (test_hostile_held_out.py grades with them)."""

from __future__ import annotations

import nbformat
import numpy as np
import pytest

from autograder.batch.held_out import held_out_samples, prepare_held_out
from autograder.course import REPO_ROOT, AutograderError, UsageError, find_assignments
from data_fetch import Dataset, manifest
from mlhep import held_out


@pytest.fixture
def grading_mode():
    """The module as a grading run leaves it, put back afterwards."""
    yield held_out
    held_out._grading = None


def test_the_grader_finds_the_samples_each_assignment_tests_with():
    found = {assignment: held_out_samples(assignment) for assignment in find_assignments()}
    # The sizes are the manifest's (the hidden tests name the dataset only): 5 000, 10 000, 40 000, 10 000.
    assert found == {
        "00_getting_started": [],
        "01_autoencoder_anomaly_detection": [("cms_ad", 5000)],
        "02_likelihood_ratio_reweighting": [("reweighting", 10000)],
        "03_cwola_hunting": [("dijet_resonance", 40000)],
        "04_jet_taggers": [("top_tagging", 10000)],
        "05_normalized_autoencoders": [("top_tagging", 10000)],
        "06_hls4ml_fpga": [("cms_ad", 5000)],
    }


def test_the_grader_refuses_a_held_out_call_it_cannot_read(tmp_path, monkeypatch):
    import autograder.batch.held_out as grader_side

    assignment = tmp_path / "99_lesson"
    assignment.mkdir()
    for call in (
        "held_out_sample(name)",
        'held_out_sample("no_such_dataset")',
        'held_out_sample("cms_ad", n_events=size)',
    ):
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"held_out = {call}")])
        nbformat.write(notebook, assignment / "99_lesson.ipynb")
        monkeypatch.setattr(grader_side, "SOLUTIONS_DIR", tmp_path)
        with pytest.raises(AutograderError, match="literal dataset name of the manifest"):
            held_out_samples("99_lesson")


def test_run_sh_prepares_the_public_samples_from_the_manifest():
    # run.sh holds no sizes or seeds of its own: fetch-course reads them from the manifest.
    script = (REPO_ROOT / "run.sh").read_text()
    assert "fetch-course --scale" in script and "--n-events" not in script and "--seed" not in script
    assert held_out.PUBLIC_SEEDS is manifest.STAND_IN_SEEDS


def test_the_graders_cache_must_be_out_of_the_sandboxs_sight(tmp_path, monkeypatch):
    monkeypatch.setenv("MLHEP_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("MLHEP_GRADER_CACHE", str(tmp_path / "data" / "grader"))
    with pytest.raises(UsageError, match="students' kernels can read"):
        prepare_held_out("01_autoencoder_anomaly_detection", tmp_path, seed=1)
    with pytest.raises(UsageError, match="non-negative integer"):
        prepare_held_out("01_autoencoder_anomaly_detection", tmp_path, seed=-1)
    assert prepare_held_out("00_getting_started", tmp_path) is None  # lesson 00 tests with none


def test_in_a_grading_run_the_seed_is_the_runs(grading_mode):
    public = held_out.held_out_rng().integers(2**62)
    grading_mode.use_grading_samples(123456789123, "/nowhere")
    assert held_out.grading() and held_out.held_out_rng().integers(2**62) != public
    grading_mode.use_grading_samples(None)
    with pytest.raises(RuntimeError, match="prepared no held-out samples"):
        held_out.held_out_sample("cms_ad", n_events=5)


def test_features_only_takes_the_truth_away():
    # cms_ad's generator weight is exactly 1 for the signal alone: it goes with the labels.
    sample = Dataset(
        "cms_ad",
        "pythia",
        {
            "objects": np.zeros((3, 19, 3)),
            "label": np.array([0, 1, 0]),
            "process": np.array([0, 2, 1]),
            "weight": np.array([2e-5, 1, 3e-5]),
        },
    )
    assert set(held_out.features_only(sample).arrays) == {"objects"}


@pytest.mark.parametrize(
    ("values", "shape", "low", "message"),
    [
        ([1.0, np.nan], (2,), None, "not finite"),
        ([1.0, np.inf], (2,), None, "not finite"),
        ([1.0, 2.0, 3.0], (2,), None, "shape"),
        ([[1.0, 2.0]], (2,), None, "shape"),
        ([1.0, -1.0], (2,), 0.0, "below 0"),
        (["a", "b"], (2,), None, "array of numbers"),
    ],
)
def test_checked_refuses_what_cannot_be_scored(values, shape, low, message):
    with pytest.raises(AssertionError, match=message):
        held_out.checked(values, "f", shape, low=low)


def test_checked_gives_a_float_array():
    array = held_out.checked(np.array([[1, 2], [3, 4]], dtype=np.int32), "f", (None, 2), low=0, high=4)
    assert array.dtype == np.float64 and array.shape == (2, 2)
