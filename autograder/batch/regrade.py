"""Grade a class again after a fix to an exercise, keeping the scores given by hand:
``python -m autograder regrade OUT_DIR [--student ID ...] [--task CELL ...]``.

The students named (default: all who were graded or failed) are graded afresh, with the assignment's
current source (the fixed hidden test) and the run's own held-out events (its recorded seed), into a
fresh private course beside the run's. Their new automatic results then go into the run's gradebook,
which stays the one the formgrader shows: the automatic score and comment of each graded cell (only of
the ``--task`` cells, if named), the submission time and late penalty; the scores and comments given by
hand are left as they are. A student whose new grading fails keeps their previous result, with the reason
in the table. The changes are printed and written to ``OUT_DIR/regrades/<time>.csv`` (a row per student
and cell that changed), and ``finalize`` then rewrites grades.csv and the feedback pages.
"""

from __future__ import annotations

import csv
import datetime
import json
import shutil
import warnings
from pathlib import Path

import nbformat
from nbgrader.api import MissingEntry

from ..course import AutograderError, UsageError
from . import late
from .finalize import Finalized, exclusive, finalize_locked, read_record
from .held_out import HELD_OUT_RECORD
from .private_course import gradebook
from .results import student_result
from .run import MISSING, grade, save_record, spreadsheet_safe

REGRADE_FOLDER = ".regrade"
DIFF_COLUMNS = ["student", "cell", "before", "after", "note"]


def regrade(
    out_dir: str | Path,
    students: list[str] | None = None,
    tasks: list[str] | None = None,
    workers: int | None = None,
) -> tuple[list[dict], Finalized]:
    """Grade ``students`` (default: all) of the run in ``out_dir`` again; the table of changes, and what
    :func:`finalize` then wrote. See the module for what is kept."""
    out_dir = Path(out_dir).resolve()
    read_record(out_dir)
    with exclusive(out_dir):
        changes = regrade_locked(out_dir, students, tasks, workers)
        return changes, finalize_locked(out_dir, release=False, allow_ungraded=False, progress=True)


def regrade_locked(
    out_dir: Path, students: list[str] | None, tasks: list[str] | None, workers: int | None
) -> list[dict]:
    record = read_record(out_dir)
    assignment = record["assignment"]
    known = {student for student, info in record["students"].items() if info["status"] != MISSING}
    chosen = sorted(known) if not students else sorted(set(students))
    unknown = sorted(set(chosen) - set(record["students"]))
    if unknown:
        raise UsageError(
            f"{', '.join(unknown[:5])} not in this run's class; its students: "
            + ", ".join(sorted(record["students"])[:10])
        )
    check_tasks(out_dir / "nbgrader", assignment, tasks)
    held_out_seed = (
        json.loads((out_dir / HELD_OUT_RECORD).read_text()).get("seed")
        if (out_dir / HELD_OUT_RECORD).exists()
        else None
    )
    options = record["options"]
    fresh_out = out_dir / REGRADE_FOLDER
    shutil.rmtree(fresh_out, ignore_errors=True)
    changes: list[dict] = []
    try:
        try:
            # The grader's own copies of what was handed in, not the exchange as it is now: a student may
            # have handed in again, or changed their folder, since.
            fresh_rows = grade(
                assignment,
                out_dir / "nbgrader" / "submitted",
                fresh_out,
                cell_timeout=options["cell_timeout"],
                notebook_timeout=options["notebook_timeout"],
                sandboxed=options["sandboxed"],
                workers=workers,
                held_out_seed=held_out_seed,
                deadline=options.get("deadline"),
                earlier_remarks={
                    student: info.get("submission_remarks", []) for student, info in record["students"].items()
                },
                late_penalty=options.get("late_penalty") or "flag",
                only_students=chosen,
                announce=False,
                limits=None if not options.get("memory_bytes") else _limits(options["memory_bytes"]),
            )
        except AutograderError as error:
            if not (fresh_out / "grades.csv").exists():
                raise
            print(f"regrade: {error}; students the grader failed on keep their previous result")
            with open(fresh_out / "grades.csv", newline="") as file:
                fresh_rows = list(csv.DictReader(file))
        check_same_cells(out_dir / "nbgrader", fresh_out / "nbgrader", assignment)
        merge(out_dir, fresh_out, record, {row["student"]: row for row in fresh_rows}, set(tasks or []), changes)
    finally:
        shutil.rmtree(fresh_out, ignore_errors=True)
        if changes:  # what was merged, even if a later student stopped the merge
            write_changes(out_dir, changes)
    print(describe_changes(changes, chosen))
    return changes


def _limits(memory_bytes: int):
    from .. import sandbox

    return sandbox.Limits(memory_bytes=memory_bytes)


def assignment_cells(gb, assignment: str) -> dict[tuple[str, str], object]:
    """(notebook, cell id) -> every graded, solution and task cell nbgrader knows of the assignment."""
    return {
        (notebook.name, cell.name): cell
        for notebook in gb.find_assignment(assignment).notebooks
        for cells in (notebook.grade_cells, notebook.solution_cells, notebook.task_cells)
        for cell in cells
    }


def check_tasks(course: Path, assignment: str, tasks: list[str] | None) -> None:
    """UsageError for a ``--task`` that is not one of the assignment's graded cells."""
    if not tasks:
        return
    with gradebook(course) as gb:
        graded = sorted(
            {cell.name for notebook in gb.find_assignment(assignment).notebooks for cell in notebook.grade_cells}
        )
    if unknown := sorted(set(tasks) - set(graded)):
        raise UsageError(f"no graded cell named {', '.join(unknown)}; the assignment's are: {', '.join(graded)}")


def check_same_cells(course: Path, fresh: Path, assignment: str) -> None:
    """AutograderError unless the fixed assignment has the same cells (graded, solution, task) as the one
    graded before: a regrade changes scores, not the exercise's structure."""
    with gradebook(course) as old_gb, gradebook(fresh) as new_gb:
        old, new = assignment_cells(old_gb, assignment), assignment_cells(new_gb, assignment)
    if set(old) != set(new):
        added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
        raise AutograderError(
            "the assignment's cells changed since this class was graded "
            f"(new: {[name for _, name in added]}, gone: {[name for _, name in removed]}); "
            "a regrade keeps the cells: grade the class afresh into a new folder instead"
        )


def merge(
    out_dir: Path, fresh_out: Path, record: dict, fresh_rows: dict[str, dict], tasks: set[str], changes: list[dict]
) -> None:
    """Put the fresh automatic results into the run's gradebook and files, student by student, adding to
    ``changes``; the run record follows each student (so a stop half-way leaves them consistent)."""
    assignment = record["assignment"]
    course, fresh = out_dir / "nbgrader", fresh_out / "nbgrader"
    with gradebook(course) as gb, gradebook(fresh) as new_gb:
        # A fixed test may be worth other points: the cells' points, and the assignment's, are the new ones.
        new_cells = {
            (notebook.name, cell.name): cell.max_score
            for notebook in new_gb.find_assignment(assignment).notebooks
            for cell in notebook.grade_cells
        }
        for notebook in gb.find_assignment(assignment).notebooks:
            for cell in notebook.grade_cells:
                cell.max_score = new_cells[(notebook.name, cell.name)]
        gb.db.commit()
        record["max_score"] = gb.find_assignment(assignment).max_score
        save_record(out_dir, record)
        for student, row in sorted(fresh_rows.items()):
            before_info = record["students"].get(student, {})
            if row["status"] != "graded":  # the previous result stays, whatever it was
                note = f"not graded again ({row['reason'].split('; ')[0]}): previous result kept"
                changes.append({"student": student, "cell": "", "before": "", "after": "", "note": note})
                continue
            was_graded = before_info.get("status") == "graded"
            before = student_result(gb, assignment, student) if was_graded else None
            taken = tasks if was_graded else set()  # a student graded for the first time takes every cell
            auto_before, auto_after = merge_student(gb, new_gb, assignment, student, taken)
            late.apply_penalty(
                gb.find_submission(assignment, student), record["options"].get("late_penalty") or "flag"
            )
            gb.db.commit()
            replace_files(course, fresh, fresh_out, out_dir, assignment, student, taken)
            after = student_result(gb, assignment, student)
            changes += student_changes(student, before, after, auto_before, auto_after)
            previous_reason = before_info.get("reason", "")
            record["students"][student] = before_info | {
                "status": "graded",
                # --task: the rest of the notebook, and so its messages, stay as they were
                "reason": previous_reason if taken else row["reason"],
                "submitted_at": after.submitted_at,
                "late_by": after.late_by,
            }
            save_record(out_dir, record)


def merge_student(gb, new_gb, assignment: str, student: str, tasks: set[str]) -> tuple[dict, dict]:
    """Copy ``student``'s new automatic scores and comments (of ``tasks`` only, if any) into ``gb``; the
    automatic scores per cell before and after."""
    try:  # nbgrader made one even for a student whose grading failed the first time
        gb.find_submission(assignment, student)
    except MissingEntry:
        gb.update_or_create_student(student)
        with warnings.catch_warnings():
            # nbgrader's add_submission warns about its own use of SQLAlchemy's session.
            warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session")
            gb.add_submission(assignment, student)
    new_submission = new_gb.find_submission(assignment, student)
    gb.find_submission(assignment, student).timestamp = new_submission.timestamp
    auto_before, auto_after = {}, {}
    for new_notebook in new_submission.notebooks:
        for new_grade in new_notebook.grades:
            if tasks and new_grade.name not in tasks:
                continue
            grade = gb.find_grade(new_grade.name, new_notebook.name, assignment, student)
            auto_before[grade.name], auto_after[grade.name] = grade.auto_score, new_grade.auto_score
            grade.auto_score = new_grade.auto_score
            if grade.manual_score is None:
                grade.needs_manual_grade = new_grade.needs_manual_grade
        for new_comment in new_notebook.comments:
            if tasks and new_comment.name not in tasks:
                continue
            comment = gb.find_comment(new_comment.name, new_notebook.name, assignment, student)
            comment.auto_comment = new_comment.auto_comment
    return auto_before, auto_after


def student_changes(student: str, before, after, auto_before: dict, auto_after: dict) -> list[dict]:
    """The rows of the table of changes for ``student``: each cell whose points changed, each cell whose
    automatic score changed under a score given by hand (which still counts), and the total."""
    rows = []
    old_points = before.points if before is not None else {}
    for cell, value in after.points.items():
        if before is None or old_points.get(cell) != value:
            rows.append(
                {
                    "student": student,
                    "cell": cell,
                    "before": _fmt(old_points.get(cell)),
                    "after": _fmt(value),
                    "note": "",
                }
            )
        elif auto_before.get(cell) != auto_after.get(cell) and cell in auto_after:
            rows.append(
                {
                    "student": student,
                    "cell": cell,
                    "before": _fmt(value),
                    "after": _fmt(value),
                    "note": f"automatic score {_fmt(auto_before[cell])} -> {_fmt(auto_after[cell])}; "
                    "the score given by hand counts",
                }
            )
    if before is None or before.score != after.score:
        rows.append(
            {
                "student": student,
                "cell": "TOTAL",
                "before": _fmt(before.score if before is not None else None),
                "after": _fmt(after.score),
                "note": "" if before is not None else "graded for the first time",
            }
        )
    return rows


def _fmt(value) -> str:
    return "" if value is None else f"{value:g}"


def replace_files(
    course: Path, fresh: Path, fresh_out: Path, out_dir: Path, assignment: str, student: str, tasks: set[str]
) -> None:
    """The student's graded notebooks and log from the fresh grading replace the previous ones; with
    ``tasks``, only those cells of the previous notebooks take their new source and outputs."""
    target = course / "autograded" / student
    new = fresh / "autograded" / student
    if tasks and target.is_dir():
        for new_path in sorted((new / assignment).glob("*.ipynb")):
            old_path = target / assignment / new_path.name
            if not old_path.is_file():
                continue
            old_notebook = nbformat.read(old_path, as_version=4)
            new_cells = {
                cell.metadata["nbgrader"]["grade_id"]: cell
                for cell in nbformat.read(new_path, as_version=4).cells
                if cell.metadata.get("nbgrader", {}).get("grade_id") in tasks
            }
            for cell in old_notebook.cells:
                if (grade_id := cell.metadata.get("nbgrader", {}).get("grade_id")) in new_cells:
                    cell.source = new_cells[grade_id].source
                    if "outputs" in cell:
                        cell.outputs = new_cells[grade_id].get("outputs", [])
            nbformat.write(old_notebook, old_path)
        return
    shutil.rmtree(target, ignore_errors=True)
    if new.is_dir():
        shutil.copytree(new, target, symlinks=True)
    log = fresh_out / "logs" / f"{student}.log"
    if log.is_file():
        shutil.copyfile(log, out_dir / "logs" / f"{student}.log")


def write_changes(out_dir: Path, changes: list[dict]) -> Path:
    folder = out_dir / "regrades"
    folder.mkdir(exist_ok=True)
    path = folder / f"{datetime.datetime.now(datetime.UTC):%Y-%m-%dT%H%M%SZ}.csv"
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=DIFF_COLUMNS)
        writer.writeheader()
        writer.writerows(spreadsheet_safe(change) for change in changes)
    return path


def describe_changes(changes: list[dict], students: list[str]) -> str:
    """The table of changes, for the terminal."""
    changed = sorted({change["student"] for change in changes if change["cell"] == "TOTAL"})
    lines = [f"Graded {len(students)} students again; the total changed for {len(changed)}."]
    if changes:
        header = dict(zip(DIFF_COLUMNS, DIFF_COLUMNS, strict=True))
        widths = [max(len(str(change[column])) for change in [header, *changes]) for column in DIFF_COLUMNS]
        for change in [header, *changes]:
            cells = (str(change[column]).ljust(width) for column, width in zip(DIFF_COLUMNS, widths, strict=True))
            lines.append("  " + "  ".join(cells))
    return "\n".join(lines)
