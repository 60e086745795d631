"""The exercises and their grading, tested from both ends with nbgrader.

* the committed exercises/ is exactly what nbgrader generates from solutions/;
* grade ids are unique, descriptive, and every test cell is worth points;
* for every assignment, the solution scores full marks and the untouched exercise scores 0;
* lesson 00's class also has hostile submissions (invalid JSON, missing notebook, an exception,
  an endless loop, a crashing kernel, a run past the wall-clock limit): each gets the expected
  score and a reason in plain words, the batch goes on, the feedback never shows hidden tests,
  and grading leaves the repository untouched.

Each class is graded once per module (fixtures ``graded`` and ``stopped``); with lesson 00
alone the file takes about two minutes on two cores. Notebooks read their data through
``data_fetch``; set MLHEP_DATA_DIR to a folder holding the cached test-scale data.
"""

from __future__ import annotations

import csv
import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import TEST_HELD_OUT_SEED

from autograder import UsageError, find_assignments
from autograder.batch.run import grade
from autograder.course import EXERCISES_DIR, REPO_ROOT, SOLUTIONS_DIR
from autograder.release import release

pytestmark = pytest.mark.grading

ASSIGNMENTS = find_assignments()
HOSTILE_LESSON = "00_getting_started"  # the lesson whose class also gets the hostile submissions
CELL_TIMEOUT = 20  # short, so that the endless loop costs little; lesson 00's cells need a few s
NOTEBOOK_TIMEOUT = 240

GRADE_ID = re.compile(r"^[a-z][a-z0-9_]{5,}$")
# Names that say nothing about the cell: test1, cell3, answer, q1, solution_2, test_cell ...
GENERIC_ID = re.compile(
    r"^(test|tests|cell|answer|question|q|solution|task|exercise|ex|problem|part|code"
    r"|grade|hidden|visible)_?(cell|test|tests|answer)?_?\d*$"
)
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


# ------------------------------------------------------------------------------ helpers


def nbgrader_cells(notebook_path: Path):
    """(cell, its nbgrader metadata) for every nbgrader cell of a notebook."""
    notebook = nbformat.read(notebook_path, as_version=4)
    return [(cell, cell.metadata["nbgrader"]) for cell in notebook.cells if "nbgrader" in cell.metadata]


def solution_notebooks():
    return sorted(SOLUTIONS_DIR.glob("*/*.ipynb"))


def tree_digest(folder: Path) -> str:
    """One hash of all file names and contents under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def repo_state() -> dict:
    """What grading must not change: solutions/, exercises/ and the repository root's entries."""
    return {
        "solutions": tree_digest(SOLUTIONS_DIR),
        "exercises": tree_digest(EXERCISES_DIR),
        "root": sorted(p.name for p in REPO_ROOT.iterdir()),
    }


def files_under(folder: Path) -> dict[str, bytes]:
    ignored = {".ipynb_checkpoints", "__pycache__"}
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not ignored.intersection(p.relative_to(folder).parts)
    }


def broken_copy(notebook_path: Path, grade_id: str, first_lines: str) -> str:
    """The notebook with ``first_lines`` put at the top of cell ``grade_id``."""
    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = first_lines + cell.source
    return nbformat.writes(notebook)


def points_by_hand(notebook_path: Path) -> float:
    """Points of the cells a person grades (graded solution cells, e.g. written answers)."""
    return sum(
        meta["points"] for _, meta in nbgrader_cells(notebook_path) if meta.get("grade") and meta.get("solution")
    )


def points_after(notebook_path: Path, grade_id: str) -> float:
    """Points of the test cells between solution cell ``grade_id`` and the next solution cell:
    the points a student loses when that solution cell does not define anything."""
    lost, counting = 0.0, False
    for _, meta in nbgrader_cells(notebook_path):
        if meta.get("solution"):
            counting = meta["grade_id"] == grade_id
        elif counting and meta.get("grade"):
            lost += meta["points"]
    return lost


def visible_text(page: Path) -> str:
    """The text a browser shows for an HTML page (tags removed, entities decoded), whitespace squeezed."""
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
    return re.sub(r"\s+", " ", text)


def hidden_and_visible_test_lines(notebook_path: Path) -> tuple[set[str], set[str]]:
    """Code lines found only inside hidden-test regions, and the visible test lines.

    Short lines (``pass``, ``else:``) are left out: a student's own code may contain them.
    """
    hidden, visible, elsewhere = set(), set(), set()
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        is_test = meta.get("grade") and not meta.get("solution") and cell.cell_type == "code"
        inside = False
        for line in cell.source.splitlines():
            if HIDDEN_BEGIN in line or HIDDEN_END in line:
                inside = HIDDEN_BEGIN in line
                continue
            if len(line.strip()) >= 20 and not line.strip().startswith("#"):
                normalized = re.sub(r"\s+", " ", line.strip())
                (hidden if inside else visible if is_test else elsewhere).add(normalized)
    # A hidden line that also appears elsewhere (say, the same histogram code in the solution)
    # may be on the page without a leak.
    return hidden - visible - elsewhere, visible


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == [
            "student",
            "assignment",
            "score",
            "max_score",
            "to_grade_by_hand",
            "late_penalty",
            "submitted_at",
            "late_by",
            "status",
            "reason",
            "comments",
        ]
        return {row["student"]: row for row in reader}


def add_student(submissions: Path, student: str, text: str, name: str, subfolder: str = "") -> None:
    folder = submissions / student / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


# ------------------------------------------------------------------------------ the class


def make_class(submissions: Path, assignment: str) -> None:
    """(a) the solutions themselves, (b) the released exercise as is, in a subfolder."""
    shutil.copytree(SOLUTIONS_DIR / assignment, submissions / "reference")
    shutil.copytree(EXERCISES_DIR / assignment, submissions / "untouched" / assignment)


def add_hostile_students(submissions: Path, assignment: str) -> None:
    """The submissions that must not stop a batch, for an assignment of one notebook."""
    (solution,) = sorted((SOLUTIONS_DIR / assignment).glob("*.ipynb"))
    name = solution.name
    solution_ids = [meta["grade_id"] for _, meta in nbgrader_cells(solution) if meta.get("solution")]
    first, last = solution_ids[0], solution_ids[-1]
    add_student(submissions, "invalid_json", '{\n "cells": [\n  {"cell_type": oops\n', name)
    add_student(submissions, "wrong_name", (EXERCISES_DIR / assignment / name).read_text(), "my_homework.ipynb")
    add_student(submissions, "exception", broken_copy(solution, last, "raise RuntimeError('student bug')\n"), name)
    add_student(submissions, "endless_loop", broken_copy(solution, first, "while True:\n    pass\n"), name)
    add_student(submissions, "kernel_crash", broken_copy(solution, last, "import os\nos._exit(1)\n"), name)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade a class for every assignment (once); returns assignment -> (rows, out_dir, csv rows)."""
    before = repo_state()
    results = {}
    for assignment in ASSIGNMENTS:
        base = tmp_path_factory.mktemp(assignment)
        submissions, out_dir = base / "submissions", base / "out"
        make_class(submissions, assignment)
        limits = {}
        if assignment == HOSTILE_LESSON:
            add_hostile_students(submissions, assignment)
            limits = {"cell_timeout": CELL_TIMEOUT, "notebook_timeout": NOTEBOOK_TIMEOUT}
        rows = grade(assignment, submissions, out_dir, held_out_seed=TEST_HELD_OUT_SEED, **limits)
        results[assignment] = ({row["student"]: row for row in rows}, out_dir, read_csv(out_dir / "grades.csv"))
    results["repo_before"], results["repo_after"] = before, repo_state()
    return results


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run whose wall-clock limit stops a student in an endless loop; the rows and out dir."""
    base = tmp_path_factory.mktemp("stopped")
    (solution,) = sorted((SOLUTIONS_DIR / HOSTILE_LESSON).glob("*.ipynb"))
    first = next(meta["grade_id"] for _, meta in nbgrader_cells(solution) if meta.get("solution"))
    add_student(
        base / "submissions", "too_slow", broken_copy(solution, first, "while True:\n    pass\n"), solution.name
    )
    rows = grade(HOSTILE_LESSON, base / "submissions", base / "out", cell_timeout=300, notebook_timeout=15)
    return rows, base / "out"


# ------------------------------------------------------------------------------ tests: sources


def test_release_has_not_drifted(tmp_path):
    release(release_dir=tmp_path)
    fix = "exercises/ differs from a fresh release of solutions/: run `python -m autograder release`"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in EXERCISES_DIR.iterdir() if p.is_dir()
    ), f"{fix} (the assignment folders differ)"
    for assignment in ASSIGNMENTS:
        fresh, committed = files_under(tmp_path / assignment), files_under(EXERCISES_DIR / assignment)
        assert sorted(fresh) == sorted(committed), f"{fix} (files of {assignment} differ)"
        changed = [name for name in fresh if fresh[name] != committed[name]]
        assert not changed, f"{fix} (changed in {assignment}: {', '.join(changed)})"


@pytest.mark.parametrize("notebook", solution_notebooks(), ids=lambda p: p.name)
def test_grade_ids_are_unique_and_descriptive(notebook):
    ids = [meta.get("grade_id", "") for _, meta in nbgrader_cells(notebook)]
    duplicates = sorted({grade_id for grade_id in ids if ids.count(grade_id) > 1})
    assert not duplicates, f"{notebook.name}: grade ids used more than once: {duplicates}"
    malformed = [grade_id for grade_id in ids if not GRADE_ID.match(grade_id)]
    assert not malformed, (
        f"{notebook.name}: grade ids must be lower case, at least 6 characters, "
        f"of letters, digits and _: {malformed}"
    )
    generic = [grade_id for grade_id in ids if GENERIC_ID.match(grade_id)]
    assert not generic, f"{notebook.name}: grade ids must say what the cell is, not {generic}"


@pytest.mark.parametrize("notebook", solution_notebooks(), ids=lambda p: p.name)
def test_test_cells_are_worth_points(notebook):
    pointless = [
        meta["grade_id"]
        for _, meta in nbgrader_cells(notebook)
        if meta.get("grade") and not meta.get("points", 0) > 0
    ]
    assert not pointless, f"{notebook.name}: graded cells without points: {pointless}"


@pytest.mark.parametrize("notebook", solution_notebooks(), ids=lambda p: p.name)
def test_test_cells_only_judge(notebook):
    """Test cells run in the grader (autograder.testcells), so the names they assign never reach the
    student's kernel: a later cell that reads one would work in Jupyter and fail when graded."""
    import ast

    cells = nbformat.read(notebook, as_version=4).cells
    assigned_by_tests: dict[str, str] = {}
    for cell in cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        tree = ast.parse(cell.source)
        if meta.get("grade") and not meta.get("solution"):
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    assigned_by_tests.setdefault(node.id, meta["grade_id"])
            continue
        names = [node for node in ast.walk(tree) if isinstance(node, ast.Name)]
        own = {node.id for node in names if isinstance(node.ctx, ast.Store)}
        read = {node.id for node in names if isinstance(node.ctx, ast.Load)}
        leaks = sorted((read - own) & set(assigned_by_tests))
        assert not leaks, (
            f"{notebook.name}: cell {meta.get('grade_id', cell.get('id'))} reads "
            f"{', '.join(f'{n} (set by test cell {assigned_by_tests[n]})' for n in leaks)}; "
            "compute it in a locked cell before the test cell instead"
        )


def test_the_glob_finds_assignments():
    assert HOSTILE_LESSON in ASSIGNMENTS, f"the hostile class is graded with {HOSTILE_LESSON}, now missing"


# ------------------------------------------------------------------------------ tests: grading


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_gets_full_marks(graded, assignment):
    rows, _, _ = graded[assignment]
    row = rows["reference"]
    assert row["status"] == "graded" and row["reason"] == "", row
    by_hand = sum(points_by_hand(path) for path in (SOLUTIONS_DIR / assignment).glob("*.ipynb"))
    assert row["to_grade_by_hand"] == by_hand, row
    # Full marks for everything the autograder can grade; written answers wait for a person.
    assert row["max_score"] > by_hand and row["score"] == row["max_score"] - by_hand, row


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_untouched_exercise_scores_zero(graded, assignment):
    rows, _, _ = graded[assignment]
    row = rows["untouched"]
    assert row["status"] == "graded" and row["score"] == 0, row
    assert "NotImplementedError" in row["reason"], row


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_csv_has_every_student(graded, assignment):
    rows, out_dir, csv_rows = graded[assignment]
    students = {p.name for p in (out_dir.parent / "submissions").iterdir()}
    assert set(csv_rows) == set(rows) == students
    for student, row in rows.items():
        assert float(csv_rows[student]["score"]) == row["score"]
        assert csv_rows[student]["status"] == row["status"] and csv_rows[student]["reason"] == row["reason"]


def hostile(graded, student):
    rows, _, _ = graded[HOSTILE_LESSON]
    return rows[student]


def test_invalid_json_fails_with_line(graded):
    row = hostile(graded, "invalid_json")
    assert (row["status"], row["score"]) == ("failed", 0)
    assert row["reason"] == "not a valid notebook: invalid JSON (line 3)"


def test_missing_notebook_fails(graded):
    row = hostile(graded, "wrong_name")
    assert (row["status"], row["score"]) == ("failed", 0)
    assert f"no notebook named {HOSTILE_LESSON}.ipynb in the submission" in row["reason"]
    assert "my_homework.ipynb" in row["reason"]


def test_exception_in_a_solution_gives_partial_score(graded):
    (solution,) = sorted((SOLUTIONS_DIR / HOSTILE_LESSON).glob("*.ipynb"))
    last = [meta["grade_id"] for _, meta in nbgrader_cells(solution) if meta.get("solution")][-1]
    row = hostile(graded, "exception")
    assert row["status"] == "graded"
    assert 0 < row["score"] < row["max_score"]
    assert row["score"] == row["max_score"] - points_after(solution, last)
    assert f"cell {last} raised RuntimeError" in row["reason"]
    assert "test cell" in row["reason"] and "failed" in row["reason"]


def test_endless_loop_is_interrupted_and_grading_goes_on(graded):
    (solution,) = sorted((SOLUTIONS_DIR / HOSTILE_LESSON).glob("*.ipynb"))
    first = next(meta["grade_id"] for _, meta in nbgrader_cells(solution) if meta.get("solution"))
    row = hostile(graded, "endless_loop")
    assert row["status"] == "graded"
    assert 0 < row["score"] < row["max_score"]
    assert row["score"] == row["max_score"] - points_after(solution, first)
    assert f"cell {first} was interrupted after the {CELL_TIMEOUT} s time limit" in row["reason"]


def test_kernel_crash_fails_the_student_only(graded):
    row = hostile(graded, "kernel_crash")
    assert (row["status"], row["score"]) == ("failed", 0)
    assert "the kernel died" in row["reason"]


def test_wall_clock_limit_stops_the_student_and_its_kernel(stopped):
    rows, out_dir = stopped
    assert [(row["student"], row["status"], row["score"]) for row in rows] == [("too_slow", "failed", 0)]
    assert rows[0]["reason"] == "grading took longer than 15 s and was stopped"
    # No process may be left running in the private course (the kernel's working folder).
    leftovers = []
    for process in psutil.process_iter(["pid", "cwd"]):
        if process.info["cwd"] and Path(process.info["cwd"]).is_relative_to(out_dir):
            leftovers.append(process.info["pid"])
    assert not leftovers, f"processes left running in {out_dir}: {leftovers}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_feedback_exists_and_hides_hidden_tests(graded, assignment):
    rows, out_dir, _ = graded[assignment]
    graded_students = [student for student, row in rows.items() if row["status"] == "graded"]
    assert graded_students
    for notebook in sorted((SOLUTIONS_DIR / assignment).glob("*.ipynb")):
        hidden, visible = hidden_and_visible_test_lines(notebook)
        for student in graded_students:
            page = out_dir / "feedback" / student / f"{notebook.stem}.html"
            assert page.is_file(), f"no feedback for {student}: {page}"
            text = visible_text(page)
            assert "HIDDEN TESTS" not in text, f"{page} shows a hidden-test marker"
            leaked = [line for line in hidden if line in text]
            assert not leaked, f"{page} shows hidden test code: {leaked[:3]}"
            # The check can see code at all: the visible tests are on the page.
            assert any(line in text for line in visible), f"{page}: visible tests not found, check broken?"
    for student, row in rows.items():
        if row["status"] == "failed":
            assert not (out_dir / "feedback" / student).exists()


def test_grading_leaves_the_repository_unchanged(graded):
    assert graded["repo_after"] == graded["repo_before"]


# ------------------------------------------------------------------------------ tests: bad input


def test_bad_input_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("")
    (tmp_path / "class" / "alice").mkdir(parents=True)
    with pytest.raises(UsageError, match="no assignment named"):
        grade("no_such_lesson", tmp_path / "class", tmp_path / "out")
    with pytest.raises(UsageError, match="does not exist"):
        grade(HOSTILE_LESSON, tmp_path / "missing", tmp_path / "out")
    with pytest.raises(UsageError, match="has no student folders"):
        grade(HOSTILE_LESSON, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UsageError, match="cannot write to the output folder"):
        grade(HOSTILE_LESSON, tmp_path / "class", tmp_path / "a_file" / "out")


def test_cli_exits_with_2_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", HOSTILE_LESSON, str(tmp_path / "none")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_the_private_gradebook_is_the_one_nbgrader_makes(tmp_path, monkeypatch):
    """make_course makes the gradebook without nbgrader's `alembic heads` subprocess: same schema, same version."""
    from nbgrader.api import Gradebook

    from autograder.batch.private_course import make_course

    def schema(database: Path) -> dict:
        import sqlite3

        with sqlite3.connect(database) as db:
            tables = dict(db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall())
            return {"tables": tables, "version": db.execute("SELECT version_num FROM alembic_version").fetchall()}

    course = make_course(tmp_path / "course", HOSTILE_LESSON, cell_timeout=30)
    # nbgrader runs the `alembic` command, next to Python.
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    with Gradebook(f"sqlite:///{tmp_path / 'by_nbgrader.db'}"):
        pass
    assert schema(course / "gradebook.db") == schema(tmp_path / "by_nbgrader.db")


def test_a_student_the_grader_failed_on_makes_the_batch_incomplete(tmp_path, monkeypatch):
    """A grader's own failure on one student (here: its gradebook unreadable for them) never ends
    in a summary that says all went well: the student has a row with the reason, and the command
    raises (exit code 1) after writing grades.csv with every student."""
    import sqlite3

    from autograder import AutograderError
    from autograder.batch import run as grade_module

    real_read_results = grade_module.read_results

    def read_results(run, student):
        if student == "untouched":
            raise sqlite3.DatabaseError("file is not a database")
        return real_read_results(run, student)

    monkeypatch.setattr(grade_module, "read_results", read_results)
    make_class(tmp_path / "submissions", HOSTILE_LESSON)
    with pytest.raises(AutograderError, match="INCOMPLETE.*untouched"):
        grade(HOSTILE_LESSON, tmp_path / "submissions", tmp_path / "out", workers=1)
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert set(rows) == {"reference", "untouched"}
    assert rows["reference"]["status"] == "graded" and float(rows["reference"]["score"]) > 0
    assert rows["untouched"]["status"] == "failed"
    assert rows["untouched"]["reason"].startswith(grade_module.GRADER_ERROR), rows["untouched"]
