"""The grader's plain-words reasons (autograder.batch.diagnose), read off recorded grader output.

``tests/data/grader_logs/`` holds what a grading run leaves behind, one file per failure the
reasons know about, laid out like the run's output folder:

* ``logs/``: nbgrader's log of a student it could not grade (``OUT/logs/<student>.log``, as the
  grading worker captures it from ``NbGraderAPI.autograde``), read by ``explain_failure``;
* ``submitted/``: files handed in as the notebook, checked by ``notebook_problem`` before grading;
* ``autograded/``: graded notebooks with their outputs, as nbgrader and the grader's test cells
  (autograder.testcells) write them, read by ``describe_notebook`` with the gradebook's scores.

Each file's expected reason is in a table below. A new recorded file needs a row, so that no
file in the folder goes untested.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.batch.diagnose import describe_notebook, explain_failure, notebook_problem

RECORDED = Path(__file__).parent / "data" / "grader_logs"
CELL_TIMEOUT = 30  # the cell time limit the recorded runs had (their logs say "(30s)")

DIED = "the kernel died (the notebook crashed Python, e.g. it ran out of memory or called exit)"
#: logs/<file> -> the reason explain_failure gives.
LOG_REASONS = {
    "kernel_died.log": DIED,
    # The sandbox's memory limit kills the kernel: nbgrader sees a dead kernel. (That a limit was
    # reached is added by the sandbox's own accounting, not read from the log.)
    "memory_limit.log": DIED,
    "timeout_not_interruptible.log": "a cell ran past the 30 s time limit and did not stop when interrupted, "
    "so nbgrader gave up on the notebook",
    "kernel_unresponsive.log": "the kernel stopped responding and could not be interrupted",
    # nbgrader's own message here ("an old version of the nbgrader metadata format") would mislead.
    "duplicated_cell.log": "cell count_objects_solution appears more than once in the notebook (a copied cell), "
    "which nbgrader cannot grade",
    "broken_metadata.log": "the notebook's nbgrader cell metadata is broken (a cell's grade id or type was "
    "edited), so nbgrader could not grade it",
    # Otherwise nbgrader's first error, without the generic lines around it ...
    "no_notebooks.log": "nbgrader could not grade the notebook: No notebooks found, did you forget to run "
    "'nbgrader generate_assignment'?",
    "command_line_unknown_student.log": "nbgrader could not grade the notebook: No student with ID 'ghost' "
    "exists in the database",
    # ... and when it logged nothing but those, a pointer to the log.
    "disk_full.log": "nbgrader could not grade the notebook (see its log)",
}

#: submitted/<file> -> why nbgrader could not read it (None: it can).
SUBMITTED_PROBLEMS = {
    "valid.ipynb": None,
    "old_format_v3.ipynb": None,  # nbformat 3 is converted, not refused
    "merge_conflict.ipynb": "not a valid notebook: invalid JSON (line 21)",
    "latin1.ipynb": "not a valid notebook: the file is not UTF-8 text",
    "code_cell_without_outputs.ipynb": "not a valid notebook: 'outputs' is a required property",
    # Without an "nbformat" key nbformat takes it for version 1, which it then cannot convert.
    "contents_api_model.ipynb": "not a valid notebook: Notebook could not be converted from version 1 to "
    "version 2 because it's missing a key: cells",
}

COUNT, DIJET = "count_objects_ignores_padding", "dijet_mass_of_leading_jets"
QUALITY, WRITTEN = "autoencoder_finds_the_signal", "why_signals_can_look_normal"
STOPPED_ANSWERING = (
    "the notebook's kernel stopped answering the grader: it died, was stopped, or the "
    "notebook's code interfered with grading"
)
#: autograded/<file> -> (the gradebook's grade id -> (score, max_score, needs_manual_grade), the reasons).
NOTEBOOK_REASONS = {
    "all_passed.ipynb": ({COUNT: (3, 3, False), DIJET: (4, 4, False)}, []),
    "cell_timeout.ipynb": (
        {COUNT: (0, 3, False), DIJET: (0, 4, False)},
        [
            "cell count_objects_solution was interrupted after the 30 s time limit",
            f"test cell {COUNT} failed (NameError)",
            f"cell {DIJET} was interrupted after the 30 s time limit",
            f"test cell {DIJET} failed (CellTimeoutError)",
            "cell plot_dijet_mass was interrupted after the 30 s time limit",
        ],
    ),
    "output_limit.ipynb": (
        {COUNT: (3, 3, False), DIJET: (4, 4, False)},
        [
            "cell count_objects_solution: the cell printed more than the output limit and was stopped",
        ],
    ),
    "kernel_stopped_answering.ipynb": (
        {COUNT: (0, 3, False), DIJET: (0, 4, False)},
        [
            f"test cell {COUNT} failed ({STOPPED_ANSWERING})",
            f"test cell {DIJET} failed ({STOPPED_ANSWERING})",
        ],
    ),
    "hidden_tests_not_run.ipynb": (
        {COUNT: (0, 3, False), DIJET: (4, 4, False)},
        [
            f"test cell {COUNT} failed (the notebook stopped before its end, so its hidden tests did not run)",
        ],
    ),
    "stderr_warning.ipynb": (
        {COUNT: (0, 3, False), DIJET: (4, 4, False)},
        [
            f"test cell {COUNT} failed (it wrote to stderr, e.g. a warning, which nbgrader counts as a failure)",
        ],
    ),
    # nbgrader gives a deleted test cell 0 and flags it for grading by hand.
    "missing_test_cell.ipynb": (
        {COUNT: (3, 3, False), DIJET: (0, 4, True)},
        [
            f"test cell {DIJET} is missing from the notebook (deleted, or its metadata was changed)",
        ],
    ),
    "student_error.ipynb": (
        {COUNT: (0, 3, False), DIJET: (0, 4, False)},
        [
            f"test cell {COUNT} failed (the notebook's code raised an error)",
            f"test cell {DIJET} failed (AssertionError)",
            "cell plot_dijet_mass raised TypeError",
        ],
    ),
    # The written answer waits for a person: never a reason, whatever its score.
    "partial_credit.ipynb": (
        {QUALITY: (3.75, 6, False), WRITTEN: (0, 2, True)},
        [
            f"test cell {QUALITY} failed (3.75 of 6 points)",
        ],
    ),
    "score_not_finite.ipynb": (
        {QUALITY: (0, 6, False), WRITTEN: (0, 2, True)},
        [
            f"test cell {QUALITY} failed (the score the test computed from the notebook's results was not "
            "a finite number in range (for example the results were NaN), which counts 0)",
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(LOG_REASONS))
def test_a_recorded_nbgrader_log_gives_its_reason(name):
    log = (RECORDED / "logs" / name).read_text()
    assert explain_failure(log, CELL_TIMEOUT) == LOG_REASONS[name]


@pytest.mark.parametrize("name", sorted(SUBMITTED_PROBLEMS))
def test_a_recorded_submitted_file_gives_its_problem(name):
    assert notebook_problem(RECORDED / "submitted" / name) == SUBMITTED_PROBLEMS[name]


@pytest.mark.parametrize("name", sorted(NOTEBOOK_REASONS))
def test_a_recorded_graded_notebook_gives_its_reasons(name):
    scores, reasons = NOTEBOOK_REASONS[name]
    assert describe_notebook(RECORDED / "autograded" / name, scores, CELL_TIMEOUT) == reasons


@pytest.mark.parametrize(
    ("folder", "table"),
    [("logs", LOG_REASONS), ("submitted", SUBMITTED_PROBLEMS), ("autograded", NOTEBOOK_REASONS)],
)
def test_every_recorded_file_has_an_expected_reason(folder, table):
    # A file added without a row, or a row whose file was removed, would go unnoticed otherwise.
    assert sorted(path.name for path in (RECORDED / folder).iterdir()) == sorted(table)


def test_the_label_goes_before_every_cell_name():
    # An assignment of several notebooks names the notebook in each reason.
    scores, _ = NOTEBOOK_REASONS["cell_timeout.ipynb"]
    reasons = describe_notebook(
        RECORDED / "autograded" / "cell_timeout.ipynb", scores, CELL_TIMEOUT, label="00_getting_started.ipynb: "
    )
    assert reasons[0] == (
        "cell 00_getting_started.ipynb: count_objects_solution was interrupted after the 30 s time limit"
    )
    assert all("00_getting_started.ipynb: " in reason for reason in reasons)


def test_the_time_limit_in_a_reason_is_the_runs():
    scores, _ = NOTEBOOK_REASONS["cell_timeout.ipynb"]
    reasons = describe_notebook(RECORDED / "autograded" / "cell_timeout.ipynb", scores, 2.5)
    assert reasons[0] == "cell count_objects_solution was interrupted after the 2.5 s time limit"
    log = (RECORDED / "logs" / "timeout_not_interruptible.log").read_text()
    assert explain_failure(log, 2.5).startswith("a cell ran past the 2.5 s time limit")


def test_no_reason_quotes_the_tests_or_the_students_code():
    # Reasons go to students as they are: no line of test code (hidden or not) and no traceback.
    test_lines = {"assert", "np.", "###", "Traceback", 'File "'}
    reasons = [explain_failure((RECORDED / "logs" / name).read_text(), CELL_TIMEOUT) for name in LOG_REASONS]
    for name, (scores, _) in NOTEBOOK_REASONS.items():
        reasons += describe_notebook(RECORDED / "autograded" / name, scores, CELL_TIMEOUT)
    for reason in reasons:
        assert not any(marker in reason for marker in test_lines), reason
