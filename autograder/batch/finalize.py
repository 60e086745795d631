"""Bring the scores given by hand into the files a class receives: ``python -m autograder finalize OUT_DIR``.

``grade`` writes ``grades.csv`` and the feedback pages from the automatic scores; the written answers
are then graded in nbgrader's formgrader, into the gradebook of ``OUT_DIR/nbgrader/``. ``finalize``
reads that gradebook and writes, from it alone:

* ``grades.csv``: automatic and manual points, the late penalty, the comments given by hand, and the
  points still waiting for a person (``to_grade_by_hand``, with the cells named in ``reason``);
* ``feedback/<student>/*.html``: nbgrader's feedback pages again, now with the manual scores and
  comments (the hidden tests still removed, :mod:`.feedback`), and ``feedback.zip``, a folder per student;
* ``lms.csv``: one row per student (``student_id``, ``total``, ``max_total``, a column per graded cell,
  ``late_penalty``, ``status``) for a learning-management system's grade import (see the README);
* with ``--release``, the feedback released through nbgrader's exchange the class was collected from,
  where students get it with ``nbgrader fetch_feedback``.

Everything is written in a staging folder first and moved into place at the end, so a failure
half-way leaves the previous files as they were (an interruption during the moves themselves is
completed by the next run). Running it twice gives the same files. ``lms.csv`` and the release wait
until nothing is left to grade by hand, unless ``--allow-ungraded``, which counts those cells 0.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm.auto import tqdm

from ..course import AutograderError, UsageError, nbgrader_api
from . import late
from .private_course import gradebook
from .results import student_result
from .run import COLUMNS, GRADER_ERROR, MISSING, RUN_RECORD, spreadsheet_safe, write_csv
from .submissions import MAX_FEEDBACK_BYTES, SECRET_FILE, exchange_inbound, read_regular_file

LMS_FILE = "lms.csv"
ARCHIVE_FILE = "feedback.zip"
STAGING_PREFIX = ".finalize-"
LOCK_FILE = ".lock"
#: Names the staging folder while its contents are being moved into place (see recover_interrupted).
SWAP_MARKER = ".finalize-moving"
#: The files and folders finalize replaces, relative to OUT_DIR.
OUTPUTS = ("grades.csv", LMS_FILE, ARCHIVE_FILE, "feedback", "nbgrader/feedback")
#: Zip entries carry this date, so the same feedback gives the same archive.
ZIP_DATE = (2000, 1, 1, 0, 0, 0)


@dataclass
class Finalized:
    """What finalize wrote: the rows of grades.csv, the students still waiting for a person, and those
    whose feedback went to the exchange."""

    rows: list[dict]
    waiting: dict[str, list[str]]
    released: list[str]
    lms_written: bool
    incomplete: list[str] = field(default_factory=list)  # students the grader itself failed on
    not_released: dict[str, str] = field(default_factory=dict)  # student -> why their feedback stayed here
    release_asked: bool = False


def read_record(out_dir: Path) -> dict:
    """The run record ``grade`` left in ``out_dir``; UsageError if it is not a grading output folder."""
    record_path = out_dir / RUN_RECORD
    if not out_dir.is_dir():
        raise UsageError(f"the folder {out_dir} does not exist")
    if not record_path.is_file() or not (out_dir / "nbgrader" / "gradebook.db").is_file():
        raise UsageError(
            f"{out_dir} is not the output folder of a grading run (no {RUN_RECORD} or nbgrader/gradebook.db); "
            f"make one with `python -m autograder grade ASSIGNMENT SUBMISSIONS_DIR --out {out_dir}`"
        )
    return json.loads(record_path.read_text())


def finalize(
    out_dir: str | Path, release: bool = False, allow_ungraded: bool = False, progress: bool = True
) -> Finalized:
    """Rewrite ``out_dir``'s grades.csv, feedback pages and exports from its gradebook (see the module).

    Raises:
        UsageError: not a grading output folder; ``release`` for a class that did not come from an exchange.
    """
    out_dir = Path(out_dir).resolve()
    read_record(out_dir)
    with exclusive(out_dir):
        return finalize_locked(out_dir, release, allow_ungraded, progress)


@contextlib.contextmanager
def exclusive(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's lock: one finalize or regrade at a time (UsageError if another holds it)."""
    with open(out_dir / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another finalize or regrade is running on {out_dir}: wait for it to end, then run this again"
            ) from None
        yield  # the lock ends with the file's closing


def finalize_locked(out_dir: Path, release: bool, allow_ungraded: bool, progress: bool) -> Finalized:
    record = read_record(out_dir)
    recover_interrupted(out_dir)
    for staging in out_dir.glob(f"{STAGING_PREFIX}*"):  # left by a run that failed before its moves
        shutil.rmtree(staging, ignore_errors=True)
    assignment = record["assignment"]
    course = out_dir / "nbgrader"
    exchange = exchange_course(record) if release else None

    rows, points, waiting = read_gradebook(course, assignment, record)
    cells = grade_cells(course, assignment)
    # A student the grader itself failed on has no result yet: as for answers still to grade by hand,
    # nothing goes to the LMS or the students until they are graded (or the TA says so).
    incomplete = [row["student"] for row in rows if GRADER_ERROR in row["reason"]]
    ready = (not waiting and not incomplete) or allow_ungraded
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=STAGING_PREFIX))
    try:
        graded = [row["student"] for row in rows if row["status"] == "graded"]
        for student, problem in write_feedback(course, assignment, graded, staging, progress).items():
            row = next(row for row in rows if row["student"] == student)
            row["reason"] = "; ".join(filter(None, [row["reason"], problem]))
            graded.remove(student)  # no page of theirs to release
        write_csv(rows, staging / "grades.csv")
        write_archive(staging / "feedback", staging / ARCHIVE_FILE)
        if ready:
            # An LMS knows the students on the roster only: the others stay in grades.csv, with their remark.
            roster = record.get("roster")
            on_roster = [row for row in rows if roster is None or row["student"] in roster]
            write_lms_csv(on_roster, points, cells, staging / LMS_FILE)
        (out_dir / SWAP_MARKER).write_text(json.dumps({"staging": staging.name, "remove_lms": not ready}))
        move_into_place(out_dir, staging, remove_lms=not ready)
    finally:
        if not (out_dir / SWAP_MARKER).exists():  # else the next run finishes the moves from it
            shutil.rmtree(staging, ignore_errors=True)
    finalized = Finalized(rows, waiting, [], ready, incomplete, release_asked=exchange is not None)
    if exchange is not None and ready:
        finalized.released, finalized.not_released = release_feedback(course, assignment, graded, exchange)
    return finalized


def read_gradebook(course: Path, assignment: str, record: dict) -> tuple[list[dict], dict, dict[str, list[str]]]:
    """The rows of grades.csv, each graded student's points per cell, and the cells still waiting per student.

    The late penalties are worked out again first, on the scores given by hand too (``AssignLatePenalties``
    saw only the automatic ones), with the run's policy.
    """
    policy = record["options"].get("late_penalty") or "flag"
    rows, points, waiting = [], {}, {}
    with gradebook(course) as gb:
        for submission in gb.assignment_submissions(assignment):
            late.apply_penalty(submission, policy)
        gb.db.commit()
        for student, info in sorted(record["students"].items()):
            row = {name: "" for name in COLUMNS} | {
                "student": student,
                "assignment": assignment,
                "score": 0.0,
                "max_score": record["max_score"],
                "to_grade_by_hand": 0.0,
                "late_penalty": 0.0,
                "status": info["status"],
                "reason": info["reason"],
                "submitted_at": info.get("submitted_at", ""),
                "late_by": info.get("late_by", ""),
            }
            if info["status"] == "graded":
                result = student_result(gb, assignment, student)
                row.update(result.row_values())
                points[student] = result.points
                if result.waiting:
                    waiting[student] = result.waiting
                    note = f"to grade by hand: {', '.join(result.waiting)}"
                    row["reason"] = "; ".join(filter(None, [note, row["reason"]]))
            rows.append(row)
    return rows, points, waiting


def grade_cells(course: Path, assignment: str) -> list[str]:
    """The assignment's graded cells, in the order of its notebooks (the LMS file's columns)."""
    cells = []
    for path in sorted((course / "source" / assignment).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") or meta.get("task"):
                cells.append(meta["grade_id"])
    return cells


def write_feedback(
    course: Path, assignment: str, students: list[str], staging: Path, progress: bool
) -> dict[str, str]:
    """nbgrader's feedback pages of ``students``, made again from the gradebook, into ``staging``:
    ``nbgrader/feedback/`` as nbgrader lays it out (for the exchange), ``feedback/<student>/`` for the TA.
    Returns the students whose pages could not be written, and why (the others' pages are written)."""
    api, _ = nbgrader_api(course)
    nbgrader_feedback = staging / "nbgrader-feedback"
    # An absolute folder: nbgrader joins it onto the course's root, which leaves it as it is.
    api.coursedir.feedback_directory = str(nbgrader_feedback)
    failed: dict[str, str] = {}
    for student in tqdm(students, desc="feedback pages", unit="student", disable=not progress):
        result = api.generate_feedback(assignment, student, force=True)
        pages = sorted((nbgrader_feedback / student / assignment).glob("*.html"))
        dest = staging / "feedback" / student
        try:
            if not result.get("success") or not pages:
                raise OSError("nbgrader failed")
            dest.mkdir(parents=True)
            for page in pages:
                (dest / page.name).write_bytes(read_regular_file(page.parent, page.name, MAX_FEEDBACK_BYTES))
        except OSError as error:
            shutil.rmtree(dest, ignore_errors=True)
            shutil.rmtree(nbgrader_feedback / student, ignore_errors=True)  # nothing of theirs to release
            failed[student] = (
                f"no feedback page: {getattr(error, 'strerror', None) or error} (see logs/finalize.log)"
            )
            with open(course.parent / "logs" / "finalize.log", "a") as log:
                log.write(f"[{student}]\n{result.get('log', '')}{result.get('error', '')}\n")
    (staging / "feedback").mkdir(exist_ok=True)
    nbgrader_feedback.mkdir(exist_ok=True)
    return failed


def write_archive(feedback: Path, archive: Path) -> None:
    """``feedback/`` as a zip with a folder per student, the same bytes for the same pages."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for page in sorted(feedback.rglob("*.html")):
            entry = zipfile.ZipInfo(str(page.relative_to(feedback)), date_time=ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            zipped.writestr(entry, page.read_bytes())


def lms_rows(rows: list[dict], points: dict, cells: list[str]) -> tuple[list[str], list[dict]]:
    """The LMS file's header and rows: a student's total and points per cell (0 for a cell not graded)."""
    header = ["student_id", "total", "max_total", *cells, "late_penalty", "status"]
    out = []
    for row in rows:
        mine = points.get(row["student"], {})
        status = row["status"] if row["status"] != MISSING else "no submission"
        out.append(
            {
                "student_id": row["student"],
                "total": row["score"],
                "max_total": row["max_score"],
                **{cell: mine.get(cell) or 0.0 for cell in cells},
                "late_penalty": row["late_penalty"],
                "status": status,
            }
        )
    return header, out


def write_lms_csv(rows: list[dict], points: dict, cells: list[str], path: Path) -> None:
    header, out = lms_rows(rows, points, cells)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(spreadsheet_safe(row) for row in out)
    path.write_text(buffer.getvalue())


def move_into_place(out_dir: Path, staging: Path, remove_lms: bool) -> None:
    """Move the staged outputs into ``out_dir``; the previous ones go into the staging folder (removed after).

    ``SWAP_MARKER`` names the staging folder throughout, so a run stopped here is finished by the next.
    """
    staged = {
        "grades.csv": staging / "grades.csv",
        LMS_FILE: staging / LMS_FILE,
        ARCHIVE_FILE: staging / ARCHIVE_FILE,
        "feedback": staging / "feedback",
        "nbgrader/feedback": staging / "nbgrader-feedback",
    }
    previous = staging / "previous"
    previous.mkdir(exist_ok=True)
    for name, source in staged.items():
        target = out_dir / name
        if not source.exists() and not (name == LMS_FILE and remove_lms):
            continue  # moved already (a run completing an interrupted one)
        if target.exists() or target.is_symlink():
            os.replace(target, previous / name.replace("/", "-"))
        if source.exists():
            os.replace(source, target)
    (out_dir / SWAP_MARKER).unlink()


def recover_interrupted(out_dir: Path) -> None:
    """Finish the moves of a finalize that was stopped while making them (its staging folder is complete)."""
    marker = out_dir / SWAP_MARKER
    if not marker.exists():
        return
    try:
        moves = json.loads(marker.read_text())
        staging = out_dir / moves["staging"]
    except (ValueError, KeyError, TypeError):
        marker.unlink()
        return
    if staging.parent == out_dir and staging.name.startswith(STAGING_PREFIX) and staging.is_dir():
        move_into_place(out_dir, staging, remove_lms=bool(moves.get("remove_lms")))
        shutil.rmtree(staging, ignore_errors=True)
    else:
        marker.unlink()


@dataclass
class ExchangeCourse:
    root: Path
    course_id: str


def exchange_course(record: dict) -> ExchangeCourse:
    """The exchange course the class was collected from; UsageError if it came from student folders."""
    inbound = exchange_inbound(Path(record["submissions_dir"])) if record.get("exchange") else None
    if inbound is None:
        raise UsageError(
            "--release sends the feedback back through nbgrader's exchange, but this class was graded from a "
            f"folder of student folders ({record['submissions_dir']}): hand out feedback/ or "
            f"{ARCHIVE_FILE} instead"
        )
    return ExchangeCourse(root=inbound.parent.parent, course_id=inbound.parent.name)


def release_feedback(
    course: Path, assignment: str, students: list[str], exchange: ExchangeCourse
) -> tuple[list[str], dict[str, str]]:
    """Release the feedback of ``students`` through the exchange with nbgrader's own ``release_feedback``;
    the students it went to, and why it did not go to the others.

    The exchange names a page by the secret the student's submission carried, so a submission without
    one cannot be sent, and neither can two with the same secret (made by hand, or copied from a
    classmate's folder): whoever holds the secret would fetch the other's page.
    """
    feedback = course / "feedback"
    secrets: dict[str, str] = {}
    not_released = {}
    for student in students:
        folder = feedback / student / assignment
        if (folder / SECRET_FILE).is_file() and (folder / late.TIMESTAMP_FILE).is_file():
            secrets[student] = (folder / SECRET_FILE).read_text().strip()
        else:
            not_released[student] = "its submission carried no secret of nbgrader's exchange"
    shared = {secret for secret in secrets.values() if list(secrets.values()).count(secret) > 1}
    for student, secret in list(secrets.items()):
        if secret in shared:
            not_released[student] = "its exchange secret is another student's too: hand the page out by hand"
            del secrets[student]
    releasable = sorted(secrets)
    others = sorted(set(students) - set(releasable))
    if not releasable:
        return [], not_released
    api, config = nbgrader_api(course)
    api.coursedir.course_id = exchange.course_id
    config.Exchange.root = str(exchange.root)  # read by the exchange's app, made with the API as its parent
    if others:
        api.coursedir.student_id_exclude = ",".join(others)
    result = api.release_feedback(assignment)
    if not result.get("success"):
        raise AutograderError(
            "nbgrader could not release the feedback through the exchange:\n"
            + (result.get("log", "") + result.get("error", ""))[-2000:]
        )
    return releasable, not_released


def report(finalized: Finalized, out_dir: str | Path) -> int:
    """Tell the TA what finalize wrote and what is left; the exit code (1 while answers wait for a person)."""
    out_dir = Path(out_dir).resolve()
    rows = finalized.rows
    graded = sum(1 for row in rows if row["status"] == "graded")
    print(
        f"Finalized {out_dir}: {graded} graded, {len(rows) - graded} failed or missing, of {len(rows)} students."
    )
    print(f"Grades:   {out_dir / 'grades.csv'}")
    print(f"Feedback: {out_dir / 'feedback'}/<student>/ and {out_dir / ARCHIVE_FILE}")
    if finalized.lms_written:
        print(f"LMS:      {out_dir / LMS_FILE}")
    if finalized.released:
        print(f"Released the feedback of {len(finalized.released)} students through the exchange")
    for student, why in sorted(finalized.not_released.items()):
        print(f"Not released to {student}: {why}")
    flagged = [row["student"] for row in rows if late.CHANGED_AFTER_DEADLINE in row["reason"]]
    if flagged:
        print(
            f"CHECK: {len(flagged)} submissions marked on time changed after the deadline "
            f"({', '.join(flagged[:10])}); see their reason in grades.csv"
        )
    finished = True
    if finalized.incomplete:
        finished = False
        names = ", ".join(finalized.incomplete[:10])
        print(
            f"INCOMPLETE: the grader itself failed on {len(finalized.incomplete)} students ({names}): grade them "
            f"with `python -m autograder regrade {out_dir} --student ID`, then finalize again."
        )
    if finalized.waiting:
        finished = False
        names = ", ".join(list(finalized.waiting)[:10])
        print(
            f"NOT FINISHED: {len(finalized.waiting)} students still have answers to grade by hand ({names}). "
            f"Grade them with `python -m autograder formgrader {out_dir}` and finalize again."
        )
    if not finished:
        if finalized.lms_written:
            print(
                "--allow-ungraded: those count 0 in lms.csv"
                + (" and the feedback." if finalized.release_asked else ".")
            )
            return 0
        print(
            f"{LMS_FILE} was not written" + (" and nothing was released" if finalized.release_asked else "") + "."
        )
        return 1
    return 0
