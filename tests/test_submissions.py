"""A class's submissions (autograder.batch.submissions): whose they are, and what of them reaches nbgrader.

No grading runs here: the student folders are made in a temporary folder, with the released
exercise of lesson 00 as the honest notebook.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

import nbformat
import pytest

from autograder import UsageError
from autograder.batch import submissions
from autograder.batch.submissions import copy_submission, find_students, read_regular_file
from autograder.course import EXERCISES_DIR

ASSIGNMENT = "00_getting_started"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
EXERCISE = EXERCISES_DIR / ASSIGNMENT / NOTEBOOK


def student(folder: Path, *, notebook: str | bytes | None = None, name: str = NOTEBOOK) -> Path:
    """A student's folder holding ``notebook`` (the untouched exercise unless given) as ``name``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = EXERCISE.read_bytes() if notebook is None else notebook
    (folder / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return folder


@contextlib.contextmanager
def at_most(seconds: int):
    """Fail instead of hanging (opening a FIFO for reading waits for a writer unless told not to)."""

    def stop(signum, frame):
        raise AssertionError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------ find_students


def test_each_student_folder_is_a_student_named_by_it(tmp_path):
    student(tmp_path / "alice")
    student(tmp_path / "bob" / ASSIGNMENT)
    (tmp_path / ".ipynb_checkpoints").mkdir()  # hidden: Jupyter's, not a student's
    (tmp_path / "README.txt").write_text("submissions of lesson 00")  # a file is no student
    found = find_students(tmp_path, ASSIGNMENT)
    assert found == {"alice": tmp_path / "alice", "bob": tmp_path / "bob"}


def test_a_folder_without_students_is_a_usage_error(tmp_path):
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    with pytest.raises(UsageError, match="has no student folders"):
        find_students(tmp_path / "empty", ASSIGNMENT)
    with pytest.raises(UsageError, match="does not exist"):
        find_students(tmp_path / "missing", ASSIGNMENT)


def test_exchange_folder_gives_each_students_latest_submission(tmp_path):
    inbound = tmp_path / "exchange" / "mlhep" / "inbound"
    for name in (
        "alice+00_getting_started+2026-11-20 10:00:00.000000 UTC+a1b2",
        "alice+00_getting_started+2026-11-21 09:00:00.000000 UTC+c3d4",
        "alice+01_autoencoder_anomaly_detection+2026-11-22 09:00:00.000000 UTC",
        "bob+00_getting_started+2026-11-19 08:00:00.000000 UTC",
    ):
        (inbound / name).mkdir(parents=True)
    for given in (tmp_path / "exchange", tmp_path / "exchange" / "mlhep", inbound):
        found = find_students(given, "00_getting_started")
        assert sorted(found) == ["alice", "bob"], given
        assert found["alice"].name.startswith("alice+00_getting_started+2026-11-21"), "the latest one"
    with pytest.raises(UsageError, match="no submissions of 02_likelihood_ratio_reweighting"):
        find_students(tmp_path / "exchange", "02_likelihood_ratio_reweighting")


def test_a_student_folder_shaped_like_an_exchange_is_one_student_among_the_others(tmp_path):
    # mallory hands in a folder with an inbound/ of fake exchange submissions, one in alice's name:
    # the class folder is still a folder of students, and alice's own submission is the one graded.
    student(tmp_path / "alice")
    fake = tmp_path / "mallory" / "inbound" / "alice+00_getting_started+2099-01-01 00:00:00.000000 UTC"
    student(fake, notebook="{}")
    for shape in ((), ("outbound",), ("outbound", "feedback")):
        for extra in shape:
            (tmp_path / "mallory" / extra).mkdir(exist_ok=True)
        found = find_students(tmp_path, ASSIGNMENT)
        assert found == {"alice": tmp_path / "alice", "mallory": tmp_path / "mallory"}, shape
    # A class of one, mallory alone: still her folder, not an exchange.
    assert find_students(tmp_path / "mallory" / "..", ASSIGNMENT)["alice"] == tmp_path / "mallory" / ".." / "alice"


def test_an_exchange_with_several_courses_asks_which(tmp_path):
    for course in ("mlhep", "other_course"):
        (tmp_path / "exchange" / course / "inbound" / "bob+00_getting_started+2026-11-19 08:00:00 UTC").mkdir(
            parents=True
        )
    with pytest.raises(UsageError, match="holds several courses .mlhep, other_course.: give the course's folder"):
        find_students(tmp_path / "exchange", ASSIGNMENT)
    assert list(find_students(tmp_path / "exchange" / "mlhep", ASSIGNMENT)) == ["bob"]


def test_the_latest_submission_wins_whichever_nbgrader_version_named_it(tmp_path):
    # Older nbgrader names a submission STUDENT+ASSIGNMENT+TIMESTAMP, newer ones add +RANDOM:
    # the timestamp alone decides, across both forms.
    inbound = tmp_path / "inbound"
    for name in (
        "carol+00_getting_started+2026-11-21 09:00:00.000000 UTC",
        "carol+00_getting_started+2026-11-21 09:00:00.500000 UTC+ff00",
        "carol+00_getting_started+2026-11-20 23:59:59.999999 UTC+zz99",
    ):
        (inbound / name).mkdir(parents=True)
    # A file named like a submission is not one.
    (inbound / "carol+00_getting_started+2026-11-30 00:00:00.000000 UTC").write_text("")
    found = find_students(inbound, ASSIGNMENT)
    assert list(found) == ["carol"]
    assert found["carol"].name == "carol+00_getting_started+2026-11-21 09:00:00.500000 UTC+ff00"


# ------------------------------------------------------------------------------ read_regular_file


def test_a_regular_file_is_read_whole(tmp_path):
    (tmp_path / NOTEBOOK).write_bytes(b"x" * 1000)
    assert read_regular_file(tmp_path, NOTEBOOK, max_bytes=1000) == b"x" * 1000


def test_a_file_over_the_limit_is_refused(tmp_path):
    (tmp_path / NOTEBOOK).write_bytes(b"x" * (2**20 + 1))
    with pytest.raises(OSError, match="larger than 1 MB") as error:
        read_regular_file(tmp_path, NOTEBOOK, max_bytes=2**20)
    assert error.value.strerror == "it is larger than 1 MB"  # the words that reach the student's reason


def test_a_symbolic_link_is_refused_not_followed(tmp_path):
    (tmp_path / "solution.ipynb").write_text("the reference solution")
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / NOTEBOOK).symlink_to(tmp_path / "solution.ipynb")
    with pytest.raises(OSError) as error:
        read_regular_file(tmp_path / "student", NOTEBOOK, max_bytes=2**20)
    assert error.value.strerror == "it is a symbolic link, not a file"


def test_a_student_folder_that_is_a_link_is_refused(tmp_path):
    student(tmp_path / "alice")
    (tmp_path / "mallory").symlink_to(tmp_path / "alice", target_is_directory=True)
    with pytest.raises(OSError) as error:
        read_regular_file(tmp_path / "mallory", NOTEBOOK, max_bytes=2**26)
    assert error.value.strerror == "the submission's folder is a symbolic link"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / NOTEBOOK)
    with at_most(5), pytest.raises(OSError) as error:
        read_regular_file(tmp_path, NOTEBOOK, max_bytes=2**20)
    assert error.value.strerror == "it is not a regular file"


def test_a_folder_named_like_the_notebook_is_refused(tmp_path):
    (tmp_path / "student" / NOTEBOOK).mkdir(parents=True)
    with pytest.raises(OSError) as error:
        read_regular_file(tmp_path / "student", NOTEBOOK, max_bytes=2**20)
    assert not isinstance(error.value, FileNotFoundError)  # refused, not missing
    # (Python refuses it before the regular-file check can, so the words are the system's.)
    problems = copy_submission(tmp_path / "student", tmp_path / "dest", ASSIGNMENT)
    assert problems == [f"{NOTEBOOK} was not graded: Is a directory"]


def test_a_missing_file_is_file_not_found(tmp_path):
    # copy_submission tells a missing notebook from a refused one by this type.
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path, NOTEBOOK, max_bytes=2**20)


# ------------------------------------------------------------------------------ copy_submission


def test_only_the_assignments_notebook_is_copied(tmp_path):
    folder = student(tmp_path / "alice")
    (folder / "notes.txt").write_text("my notes")
    (folder / "scratch.ipynb").write_bytes(EXERCISE.read_bytes())  # a notebook, but not the assignment's
    (folder / "plots").mkdir()
    (folder / "plots" / "mjj.png").write_bytes(b"\x89PNG")
    (folder / "data.ipynb").symlink_to(EXERCISE)
    dest = tmp_path / "submitted" / "alice" / ASSIGNMENT
    assert copy_submission(folder, dest, ASSIGNMENT) == []
    assert [path.name for path in dest.iterdir()] == [NOTEBOOK]
    assert (dest / NOTEBOOK).read_bytes() == EXERCISE.read_bytes()


def test_the_notebook_may_be_in_a_folder_named_like_the_assignment(tmp_path):
    student(tmp_path / "bob" / ASSIGNMENT)
    dest = tmp_path / "dest"
    assert copy_submission(tmp_path / "bob", dest, ASSIGNMENT) == []
    assert (dest / NOTEBOOK).read_bytes() == EXERCISE.read_bytes()


def test_a_linked_assignment_folder_is_not_followed(tmp_path):
    # The link would hand in someone else's notebook; the student's own folder is read instead.
    student(tmp_path / "classmate")
    (tmp_path / "mallory").mkdir()
    (tmp_path / "mallory" / ASSIGNMENT).symlink_to(tmp_path / "classmate", target_is_directory=True)
    dest = tmp_path / "dest"
    problems = copy_submission(tmp_path / "mallory", dest, ASSIGNMENT)
    assert problems == [f"no notebook named {NOTEBOOK} in the submission"]
    assert list(dest.iterdir()) == []


def test_a_linked_student_folder_is_not_followed_to_its_assignment_folder(tmp_path):
    # mallory's folder is a link to a classmate's, whose notebook is in a folder named like the
    # assignment: the link is in the middle of the path, and still nothing is read through it.
    student(tmp_path / "elsewhere" / "classmate" / ASSIGNMENT)
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "mallory").symlink_to(tmp_path / "elsewhere" / "classmate", target_is_directory=True)
    dest = tmp_path / "dest"
    problems = copy_submission(tmp_path / "class" / "mallory", dest, ASSIGNMENT)
    assert problems == [f"{NOTEBOOK} was not graded: the submission's folder is a symbolic link"]
    assert list(dest.iterdir()) == []


def test_a_wrongly_named_notebook_is_reported_by_its_name(tmp_path):
    folder = student(tmp_path / "carol", name="my_homework.ipynb")
    dest = tmp_path / "dest"
    problems = copy_submission(folder, dest, ASSIGNMENT)
    assert problems == [f"no notebook named {NOTEBOOK} in the submission (found: my_homework.ipynb)"]
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda path: path.symlink_to(EXERCISE), f"{NOTEBOOK} was not graded: it is a symbolic link, not a file"),
        (lambda path: os.mkfifo(path), f"{NOTEBOOK} was not graded: it is not a regular file"),
        (
            lambda path: path.write_text('{\n "cells": [\n  {"cell_type": oops\n'),
            "not a valid notebook: invalid JSON (line 3)",
        ),
        (lambda path: path.write_bytes(b"\xff\xfe{}"), "not a valid notebook: the file is not UTF-8 text"),
    ],
    ids=["symlink", "fifo", "invalid_json", "not_utf8"],
)
def test_a_notebook_nbgrader_must_not_read_is_left_out_with_its_problem(tmp_path, make, problem):
    (tmp_path / "student").mkdir()
    make(tmp_path / "student" / NOTEBOOK)
    dest = tmp_path / "dest"
    with at_most(5):
        assert copy_submission(tmp_path / "student", dest, ASSIGNMENT) == [problem]
    # Nothing is left for nbgrader to stop at.
    assert list(dest.iterdir()) == []


def test_a_notebook_over_the_size_limit_is_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(submissions, "MAX_NOTEBOOK_BYTES", 2**20)
    folder = student(tmp_path / "dave", notebook=b" " * (2**20 + 1))
    dest = tmp_path / "dest"
    assert copy_submission(folder, dest, ASSIGNMENT) == [f"{NOTEBOOK} was not graded: it is larger than 1 MB"]
    assert list(dest.iterdir()) == []


def test_cells_the_assignment_does_not_have_lose_their_nbgrader_marks(tmp_path):
    # nbgrader would refuse the whole notebook for a test cell it does not know; as an ordinary
    # cell it runs, and earns nothing.
    notebook = nbformat.read(EXERCISE, as_version=4)
    fake = nbformat.v4.new_code_cell(
        "print('all tests passed')",
        metadata={
            "nbgrader": {
                "grade": True,
                "grade_id": "my_own_test",
                "locked": True,
                "points": 100,
                "schema_version": 3,
                "solution": False,
                "task": False,
            }
        },
    )
    notebook.cells.append(fake)
    folder = student(tmp_path / "erin", notebook=nbformat.writes(notebook))
    dest = tmp_path / "dest"
    problems = copy_submission(folder, dest, ASSIGNMENT)
    assert problems == [
        f"cells with nbgrader marks the assignment does not have (ids {fake.id}) ran as ordinary cells"
    ]
    copied = nbformat.read(dest / NOTEBOOK, as_version=4)
    assert "nbgrader" not in copied.cells[-1].metadata
    assert copied.cells[-1].source == fake.source
    # The assignment's own cells keep theirs.
    marked = [cell.metadata["nbgrader"]["grade_id"] for cell in copied.cells if "nbgrader" in cell.metadata]
    original = [
        cell.metadata["nbgrader"]["grade_id"]
        for cell in nbformat.read(EXERCISE, as_version=4).cells
        if "nbgrader" in cell.metadata
    ]
    assert marked == original


def test_with_several_notebooks_each_problem_names_its_notebook(tmp_path, monkeypatch):
    # The course's assignments have one notebook each; nbgrader's allow several.
    solutions = tmp_path / "solutions"
    (solutions / "two_parts").mkdir(parents=True)
    for name in ("part_a.ipynb", "part_b.ipynb"):
        shutil.copy(EXERCISE, solutions / "two_parts" / name)
    monkeypatch.setattr(submissions, "SOLUTIONS_DIR", solutions)
    monkeypatch.setattr(submissions, "notebook_names", lambda assignment: ["part_a.ipynb", "part_b.ipynb"])
    folder = student(tmp_path / "frank", name="part_a.ipynb")
    (folder / "part_b.ipynb").write_text("{")
    dest = tmp_path / "dest"
    problems = copy_submission(folder, dest, "two_parts")
    assert problems == ["part_b.ipynb is not a valid notebook: invalid JSON (line 1)"]
    assert [path.name for path in dest.iterdir()] == ["part_a.ipynb"]  # the good part is graded
