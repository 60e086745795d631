"""Grade a class's submissions of one assignment with nbgrader.

A :class:`GradingRun` holds what is graded, where and how. The grading happens in a private
nbgrader course inside the output folder, never in the repository (:mod:`.private_course`):
``OUT/nbgrader/`` has its own configuration, a copy of the assignment's source, its own gradebook,
and ``submitted/<student>/...`` (:mod:`.submissions`). Students are autograded by a few long-lived
worker processes (:mod:`.worker`), one student at a time each, under a wall-clock limit per
student, so no submission can stop the batch (on this machine's pool, or as Dask tasks, see
:mod:`.cluster`); each student's kernel runs in a bubblewrap sandbox
(:mod:`autograder.sandbox`), and the test cells run in the worker (:mod:`autograder.testcells`).
The results go to ``OUT/grades.csv`` and ``OUT/feedback/``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
from tqdm.auto import tqdm

from .. import sandbox
from ..course import (
    EXERCISES_DIR,
    SOLUTIONS_DIR,
    AutograderError,
    UsageError,
    check_assignment,
    kill_tree,
    notebook_names,
)
from . import late
from .diagnose import describe_notebook, explain_failure
from .held_out import HELD_OUT_RECORD, prepare_held_out
from .private_course import generate_assignment, gradebook, make_course
from .results import student_result
from .submissions import (
    MAX_FEEDBACK_BYTES,
    copy_submission,
    exchange_inbound,
    exchange_timestamp,
    find_students,
    read_regular_file,
    read_roster,
    submission_folder,
)
from .worker import ADDRESS_SPACE_VARIABLE, PARENT_VARIABLE

#: Address space of a grading worker (see autograder.batch.worker). Measured while the hostile classes
#: of lessons 00-03 were graded (nbgrader, scikit-learn training a classifier in the grader, the
#: held-out samples): at most 1.0 GB of address space, 0.32 GB resident. Four times that stops a
#: worker that a student drives to allocate without end, long before the machine runs short.
WORKER_ADDRESS_SPACE = 4 * 2**30
# to_grade_by_hand: points of cells (e.g. written answers) that wait for a person in the formgrader;
# until then they count 0 in `score`.
# late_penalty: points taken for late work (already out of `score`); submitted_at: the exchange's time
# (UTC); late_by: how late, in words; comments: the comments given by hand, cell by cell.
COLUMNS = [
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
#: The status of a student on the roster who handed nothing in.
MISSING = "missing"
NO_SUBMISSION = "no submission"
#: The run's settings and every student's status, for `finalize` and `regrade` (OUT/grading.json).
RUN_RECORD = "grading.json"
#: Starts the reason of a student whom the grader itself failed (not their notebook): the run is
#: then incomplete, and the command says so and exits with an error after writing grades.csv.
GRADER_ERROR = "not graded, because of an error in the grader"
#: Where students are graded: this machine's pool of grading processes, or tasks of a Dask cluster.
ENGINES = ("pool", "dask")
DEFAULT_ENGINE = "pool"


@dataclass
class GradingRun:
    """One grading of a class: what is graded, where, and how.

    Args:
        assignment: name of a folder in ``solutions/``.
        submissions_dir: one folder per student, named by the student id, holding the
            assignment's notebook(s) directly or in a subfolder named like the assignment; or
            an nbgrader exchange folder (see :func:`~autograder.batch.submissions.find_students`).
        out_dir: where to write ``grades.csv``, ``feedback/<student>/``, ``logs/`` and the
            private nbgrader course ``nbgrader/`` (the outputs of an earlier run are replaced).
        cell_timeout: seconds a cell may run before it is interrupted.
        notebook_timeout: seconds the grading of one student may take before it is stopped.
        sandboxed: run each student's kernel in a bubblewrap sandbox (``autograder.sandbox``).
            Without it a notebook can read the hidden tests and the gradebook and change them:
            only for notebooks you trust.
        workers: students graded at the same time (default: one more than the cores, memory permitting);
            with ``engine="dask"`` the processes of the LocalCluster (not used with a named scheduler).
        limits: memory and processes of each student's kernel (default: ``sandbox.Limits()``).
        held_out_seed: seed of the held-out samples the quality tests judge with (default: one drawn
            at random for this run); recorded in ``OUT/held_out.json`` so a run can be repeated.
        engine: ``"pool"`` (grading processes of this machine) or ``"dask"`` (each student a task of a
            Dask cluster, :mod:`.cluster`); ``"dask"`` if a scheduler is named, else ``"pool"``.
        scheduler: address of a Dask scheduler whose workers grade and generate the held-out samples
            (default: ``$MLHEP_DASK_SCHEDULER``, if set and the engine is not ``"pool"``).
        environment: variables set (a string) or removed (None) for the grading processes, on top of
            this process's environment (a Dask worker's grading processes get the client's values).
        roster: the class list (:func:`~autograder.batch.submissions.read_roster`): a student on it with no
            submission gets a row with 0 and "no submission"; one not on it is graded, with a remark.
        deadline: ISO date and time with its time zone; work handed in later is late (its time: see
            :mod:`.late`), and ``late_penalty`` applies.
        late_penalty: ``"flag"`` (late work is marked only), ``"zero"``, or a percentage per started day,
            e.g. ``"10%/day"``.
        only_students: grade these of the class only (a regrade, :mod:`.regrade`).
        earlier_remarks: for a regrade of the grader's own copies of the submissions (:mod:`.regrade`): the
            remarks each student's submission got when it was first graded (its time, the roster), kept.
        force: grade into an output folder whose gradebook holds scores given by hand, losing them.
    """

    def __post_init__(self) -> None:
        self.submission_remarks: dict[str, list[str]] = {}  # per student, found when their files were copied
        self.skipped: list[str] = []  # folders that are no student's submission

    assignment: str
    submissions_dir: Path
    out_dir: Path
    cell_timeout: float = 300
    notebook_timeout: float = 900
    sandboxed: bool = True
    workers: int | None = None
    limits: sandbox.Limits | None = None
    held_out_seed: int | None = None
    engine: str | None = None
    scheduler: str | None = None
    environment: dict[str, str | None] | None = None
    roster: Path | None = None
    deadline: str | None = None
    late_penalty: str = "flag"
    only_students: list[str] | None = None
    earlier_remarks: dict[str, list[str]] | None = None
    force: bool = False
    max_score: float = 0.0  # the assignment's, once the private course has it

    @property
    def course(self) -> Path:
        """The private nbgrader course of the run."""
        return self.out_dir / "nbgrader"

    def check(self) -> None:
        """UsageError for options that cannot work; the sandbox's limits settled."""
        check_assignment(self.assignment)
        if self.cell_timeout <= 0 or self.notebook_timeout <= 0:
            raise UsageError("the time limits must be positive numbers of seconds")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise UsageError(f"the number of workers must be a positive integer, got {self.workers!r}")
        from data_fetch.cluster import scheduler_address

        if self.engine != "pool":  # $MLHEP_DASK_SCHEDULER names the cluster unless the pool is asked for
            self.scheduler = scheduler_address(self.scheduler)
        if self.engine is None:
            self.engine = "dask" if self.scheduler else DEFAULT_ENGINE
        if self.engine not in ENGINES:
            raise UsageError(f"the engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.scheduler and self.engine != "dask":
            raise UsageError(
                "a Dask scheduler grades with the dask engine: leave the engine out, or name no scheduler"
            )
        if self.sandboxed:
            ok, why = sandbox.available()
            if not ok:
                raise UsageError(
                    f"{why}. Student notebooks are untrusted code, so grading stops here; "
                    "to grade notebooks you trust without a sandbox, pass --unsafe-no-sandbox"
                )
            self.limits = sandbox.Limits() if self.limits is None else self.limits
        self.late_penalty = late.check_policy(self.late_penalty)
        if self.late_penalty != "flag" and not self.deadline:
            raise UsageError(
                f"a late penalty ({self.late_penalty}) needs the deadline it counts from: add --deadline"
            )
        self.due = late.parse_deadline(self.deadline) if self.deadline else None
        self.roster_ids = read_roster(Path(self.roster)) if self.roster else None

    def row(self, student: str, **values) -> dict:
        """A row of grades.csv for ``student``: nothing scored yet, then ``values``."""
        return {
            "student": student,
            "assignment": self.assignment,
            "score": 0.0,
            "max_score": self.max_score,
            "to_grade_by_hand": 0.0,
            "late_penalty": 0.0,
            "submitted_at": "",
            "late_by": "",
            "status": "",
            "reason": "",
            "comments": "",
            **values,
        }


def grade(
    assignment: str, submissions_dir: str | Path, out_dir: str | Path, announce: bool = True, **options
) -> list[dict]:
    """Autograde every student's submission of ``assignment``; ``options``: those of :class:`GradingRun`.
    ``announce``: print the summary for the TA at the end.

    Returns:
        One row per student, as written to ``grades.csv`` (keys: see ``COLUMNS``).

    Raises:
        UsageError: unknown assignment, no student folders, output folder not writable,
            time limits not positive, no sandbox possible (unless ``sandboxed=False``).
        AutograderError: the grading is incomplete (the grader itself failed on a student); the
            rows were written first.
    """
    run = GradingRun(assignment, Path(submissions_dir), Path(out_dir), **options)
    run.check()
    if run.sandboxed:
        print(f"autograder: each kernel in a sandbox, with {sandbox.describe_limits(run.limits)}")
    else:
        print(
            "autograder: WARNING: grading WITHOUT a sandbox (--unsafe-no-sandbox): the notebooks can "
            "read the hidden tests and change the gradebook"
        )
    students = class_submissions(run)
    if run.due is not None and run.earlier_remarks is None and exchange_inbound(run.submissions_dir) is None:
        print(
            "autograder: WARNING: in a folder of student folders, a submission's time is its timestamp.txt "
            "(as nbgrader's collect leaves it), which the student could write: late work is found only as far "
            "as those files are trusted"
        )
    run.out_dir = prepare_out_dir(run.out_dir, run.submissions_dir, run.force)
    from data_fetch import DataFetchError  # numpy and the generators: imported here, when a run needs them

    try:
        held_out = prepare_held_out(assignment, run.out_dir, run.held_out_seed, run.scheduler)
    except DataFetchError as error:  # a scheduler that does not answer, say
        raise UsageError(f"the held-out samples could not be made: {error}") from None
    make_course(run.course, assignment, run.cell_timeout, run.sandboxed, held_out, late_penalty=run.late_penalty)
    workers = default_workers(run.limits) if run.workers is None else run.workers
    if run.engine == "dask":
        from .cluster import grade_on_dask

        run.max_score = generate_assignment(run.course, assignment, run.due)
        rows, to_grade = copy_submissions(run, students)
        workers = min(workers, max(1, len(to_grade)))
        if to_grade:
            rows.update(grade_on_dask(run, to_grade, held_out, workers, already=len(rows)))
        rows = complete_rows(run, students, rows)
    else:
        # The workers start first: each takes seconds to import nbgrader, in parallel with the rest.
        pool = [start_worker(run, slot) for slot in range(min(workers, len(students)))]
        try:
            run.max_score = generate_assignment(run.course, assignment, run.due)
            rows = grade_class(run, students, pool)
        finally:
            for worker in pool:
                if worker.poll() is None:
                    kill_tree(worker)
    give_feedback(run, [row for row in rows if row["status"] == "graded"])
    add_submission_remarks(run, rows)
    rows = add_missing_students(run, rows)
    write_record(run, rows)
    write_csv(rows, run.out_dir / "grades.csv")
    if announce:
        print(summary(rows, run.out_dir))
    check_complete(rows, students, run.out_dir)
    return rows


def scores_given_by_hand(database: Path) -> int:
    """How many scores, extra credits and comments a person gave in the gradebook ``database`` (0 if there is
    none); UsageError if it cannot be read."""
    import sqlite3

    if not database.is_file():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as db:
            scores = db.execute(
                "SELECT COUNT(*) FROM grade WHERE manual_score IS NOT NULL "
                "OR (extra_credit IS NOT NULL AND extra_credit != 0)"
            ).fetchone()[0]
            comments = db.execute(
                "SELECT COUNT(*) FROM comment WHERE manual_comment IS NOT NULL AND manual_comment != ''"
            ).fetchone()[0]
    except sqlite3.Error as error:  # locked by a formgrader, say: what it holds cannot be told, so keep it
        raise UsageError(
            f"cannot read the gradebook {database} to see whether it holds scores given by hand ({error}); "
            "stop the formgrader on it, or give another --out, or add --force to start over"
        ) from None
    return scores + comments


def prepare_out_dir(out_dir: Path, submissions_dir: Path, force: bool = False) -> Path:
    """Create ``out_dir``, check that it is writable, and remove an earlier run's outputs (not the scores a
    person gave in its gradebook, unless ``force``)."""
    out_dir = out_dir.resolve()
    for protected in (submissions_dir.resolve(), SOLUTIONS_DIR, EXERCISES_DIR):
        if out_dir == protected or protected in out_dir.parents:
            raise UsageError(f"the output folder {out_dir} must not be inside {protected}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"cannot write to the output folder {out_dir}: {error.strerror or error}") from None
    if not force and (given := scores_given_by_hand(out_dir / "nbgrader" / "gradebook.db")):
        raise UsageError(
            f"{out_dir} holds {given} scores or comments given by hand in the formgrader, which grading afresh "
            f"would lose: to grade again keeping them, run `python -m autograder regrade {out_dir}`; to grade "
            "into a new folder, give another --out; to start over and lose them, add --force"
        )
    for old in ("nbgrader", "feedback", "logs", "regrades", ".regrade", *map(str, out_dir.glob(".finalize-*"))):
        shutil.rmtree(out_dir / old, ignore_errors=True)
    for old in ("grades.csv", HELD_OUT_RECORD, RUN_RECORD, "lms.csv", "feedback.zip", ".finalize-moving"):
        (out_dir / old).unlink(missing_ok=True)
    (out_dir / "logs").mkdir()
    return out_dir


# --- The workers ------------------------------------------------------------------------------


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(limits: sandbox.Limits | None = None) -> int:
    """One worker more than the cores, as long as each student's kernel can have its memory limit
    and each worker its own (WORKER_ADDRESS_SPACE) at the same time.

    A worker leaves its core idle for moments (while a kernel starts, between a test's messages):
    the extra worker fills them. Measured on two cores, 100 students of lesson 00: 202 s with
    three workers, 215 s with two.
    """
    memory_bytes = (limits or sandbox.Limits()).memory_bytes + WORKER_ADDRESS_SPACE
    return max(1, min(usable_cores() + 1, psutil.virtual_memory().total // memory_bytes))


def grade_class(run: GradingRun, students: dict[str, Path], pool: list[subprocess.Popen]) -> list[dict]:
    """Pre-check every submission, then autograde them on the worker processes of ``pool`` at once.

    Each worker grades one student at a time; a worker that passes the notebook's time limit on a
    student, or dies, is stopped with everything it started and replaced, and that student fails
    with the reason. The rows come back sorted by student, one for each.
    """
    rows, to_grade = copy_submissions(run, students)
    pending: queue.Queue = queue.Queue()
    for student_and_problems in to_grade:
        pending.put(student_and_problems)

    progress = tqdm(total=len(students), initial=len(rows), desc=f"grading {run.assignment}", unit="student")
    lock = threading.Lock()

    def run_slot(slot: int) -> None:
        worker = pool[slot]
        try:
            while True:
                try:
                    student, problems = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    worker, result = grade_in_worker(run, worker, slot, student, problems)
                except Exception as error:  # noqa: BLE001 - the grader's own failure: reported, batch goes on
                    result = run.row(
                        student, status="failed", reason=f"{GRADER_ERROR}: {type(error).__name__}: {error}"
                    )
                with lock:
                    rows[student] = result
                    progress.set_postfix_str(student)
                    progress.update()
        finally:
            if worker is not None:
                stop_worker(worker)

    slots = [
        threading.Thread(target=run_slot, args=(slot,), name=f"grading-slot-{slot}")
        for slot in range(min(len(pool), pending.qsize()))
    ]
    for thread in slots:
        thread.start()
    for worker in pool[len(slots) :]:  # more workers than submissions to grade
        stop_worker(worker)
    for thread in slots:
        thread.join()
    progress.close()
    return complete_rows(run, students, rows)


def copy_submissions(run: GradingRun, students: dict[str, Path]) -> tuple[dict[str, dict], list[tuple[str, list]]]:
    """Copy every student's notebooks into the private course, checked (:func:`copy_submission`).

    Returns the rows of the students with no notebook to grade (failed, with the reason), and
    ``(student, problems)`` for the others, sorted by student.
    """
    rows: dict[str, dict] = {}
    to_grade = []
    for student, folder in sorted(students.items()):
        submitted = run.course / "submitted" / student / run.assignment
        notebooks_folder = submission_folder(folder, run.assignment)  # once: copied and checked alike
        problems = copy_submission(folder, submitted, run.assignment, notebooks_folder)
        # What a TA should know about when and by whom it was handed in: kept apart from the grading's
        # own problems, and added after them to the student's reason (see add_submission_remarks).
        if run.earlier_remarks is None:
            remarks = record_submission_time(run, folder, notebooks_folder, submitted)
            if run.roster_ids is not None and student not in run.roster_ids:
                same = [name for name in run.roster_ids if name.casefold() == student.casefold()]
                remarks.append("not on the roster" + (f" (the roster has {same[0]!r})" if same else ""))
        else:  # a regrade of the grader's own copies: the time and remarks found when they were handed in
            (submitted / late.TIMESTAMP_FILE).unlink(missing_ok=True)
            if (notebooks_folder / late.TIMESTAMP_FILE).is_file():
                shutil.copyfile(notebooks_folder / late.TIMESTAMP_FILE, submitted / late.TIMESTAMP_FILE)
            remarks = list(run.earlier_remarks.get(student, []))
        run.submission_remarks[student] = remarks
        if any(submitted.glob("*.ipynb")):
            to_grade.append((student, problems))
        else:
            rows[student] = run.row(student, status="failed", reason="; ".join(problems))
    return rows, to_grade


def class_submissions(run: GradingRun) -> dict[str, Path]:
    """Student id -> submission folder of the students to grade (all, or ``run.only_students``)."""
    if run.only_students is not None and not run.only_students:
        raise UsageError("no students named to grade")
    skipped: list[str] = []
    students = find_students(run.submissions_dir, run.assignment, skipped)
    if skipped:
        run.skipped = skipped
        print(f"autograder: SKIPPED {len(skipped)} folders of {run.submissions_dir}:\n  " + "\n  ".join(skipped))
    if run.only_students is None:
        return students
    unknown = sorted(set(run.only_students) - set(students) - set(run.roster_ids or ()))
    if unknown:
        raise UsageError(f"no submission of {', '.join(unknown[:5])} in {run.submissions_dir}")
    return {student: folder for student, folder in students.items() if student in run.only_students}


def record_submission_time(run: GradingRun, folder: Path, notebooks_folder: Path, submitted: Path) -> list[str]:
    """Write when the student handed in to ``timestamp.txt`` of their submission in the private course,
    where nbgrader reads it (see :mod:`.late`); what a TA should know about that time."""
    from_exchange = exchange_inbound(run.submissions_dir) is not None
    time = late.submission_time(
        notebooks_folder,
        exchange_timestamp(folder) if from_exchange else None,
        run.due,
        [notebooks_folder / name for name in notebook_names(run.assignment)],
        from_exchange=from_exchange,
    )
    if time.moment is not None:
        (submitted / late.TIMESTAMP_FILE).write_text(late.format_utc(time.moment))
    return time.remarks


def add_submission_remarks(run: GradingRun, rows: list[dict]) -> None:
    """Each student's remarks about their submission's time and the roster, after their grading's reason."""
    for row in rows:
        if remarks := run.submission_remarks.get(row["student"]):
            row["reason"] = "; ".join(filter(None, [row["reason"], *remarks]))


def add_missing_students(run: GradingRun, rows: list[dict]) -> list[dict]:
    """The rows, with a row of 0 and "no submission" for each student on the roster who handed nothing in."""
    if run.roster_ids is None:
        return rows
    have = {row["student"] for row in rows}
    wanted = run.roster_ids if run.only_students is None else [s for s in run.roster_ids if s in run.only_students]
    missing = [run.row(student, status=MISSING, reason=NO_SUBMISSION) for student in wanted if student not in have]
    return sorted(rows + missing, key=lambda row: row["student"])


def write_record(run: GradingRun, rows: list[dict]) -> None:
    """OUT/grading.json: how the class was graded and each student's status, for finalize and regrade."""
    record = {
        "assignment": run.assignment,
        "submissions_dir": str(run.submissions_dir.resolve()),
        "exchange": exchange_inbound(run.submissions_dir.resolve()) is not None,
        "options": {
            "cell_timeout": run.cell_timeout,
            "notebook_timeout": run.notebook_timeout,
            "sandboxed": run.sandboxed,
            "memory_bytes": run.limits.memory_bytes if run.limits else None,
            "roster": str(Path(run.roster).resolve()) if run.roster else None,
            "deadline": run.deadline,
            "late_penalty": run.late_penalty,
        },
        "max_score": run.max_score,
        "students": {
            row["student"]: {key: row[key] for key in ("status", "reason", "submitted_at", "late_by")}
            | {"submission_remarks": run.submission_remarks.get(row["student"], [])}
            for row in rows
        },
        "skipped": run.skipped,
        "roster": run.roster_ids,
    }
    save_record(run.out_dir, record)


def save_record(out_dir: Path, record: dict) -> None:
    """Write OUT/grading.json whole or not at all (a partial file, then renamed over it)."""
    path = out_dir / RUN_RECORD
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    partial.replace(path)


def complete_rows(run: GradingRun, students: dict[str, Path], rows: dict[str, dict]) -> list[dict]:
    """The rows sorted by student, one for each: a student the grader never got to fails with the reason."""
    for student in set(students) - set(rows):
        rows[student] = run.row(
            student, status="failed", reason=f"{GRADER_ERROR}: the grader stopped before it graded this student"
        )
    return [rows[student] for student in sorted(rows)]


def start_worker(run: GradingRun, slot: int) -> subprocess.Popen:
    """A grading worker process for the run's private course (see autograder.batch.worker)."""
    env = dict(os.environ)  # the gradebook exists already (make_course): no `alembic` command to find
    env[PARENT_VARIABLE] = str(os.getpid())
    for name, value in (run.environment or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    if run.sandboxed:  # the private course's kernelspec, which starts the kernel in the sandbox
        env["JUPYTER_PATH"] = os.pathsep.join(
            filter(None, [str(run.course / "jupyter"), os.environ.get("JUPYTER_PATH")])
        )
        # Only sandboxed: a kernel started without the launcher would inherit the worker's limit.
        env[ADDRESS_SPACE_VARIABLE] = str(WORKER_ADDRESS_SPACE)
    with open(run.out_dir / "logs" / f"worker-{slot}.log", "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "autograder.batch.worker", str(run.course), run.assignment],
            cwd=run.course,
            env=env,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )  # its own process group, see kill_tree


def stop_worker(worker: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        worker.stdin.close()  # a worker ends at the end of its input
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill_tree(worker)


def run_in_box(
    run: GradingRun, box, worker: subprocess.Popen, student: str, runtime: str, log_path: Path, done_path: Path
) -> tuple[subprocess.Popen | None, str | None, list[str]]:
    """Send the student to ``worker`` and wait, inside the student's box; the worker to reuse (None
    if it was stopped), why grading failed (None if it did not) and the box's limits reached."""
    with box:
        environment = {"JUPYTER_RUNTIME_DIR": runtime, **(box.environment() if run.sandboxed else {})}
        request = {
            "student": student,
            "environment": environment,
            "kernel_sockets": f"{runtime}/sockets/kernel" if run.sandboxed else None,
            "log": str(log_path),
            "result": str(done_path),
        }
        failure = None
        try:
            worker.stdin.write(json.dumps(request) + "\n")
            worker.stdin.flush()
        except OSError:
            failure = "the grading worker could not take this submission"
        deadline = time.monotonic() + run.notebook_timeout
        while failure is None and not done_path.exists():
            if worker.poll() is not None:
                failure = "the grading worker stopped while grading this submission (see the log)"
            elif time.monotonic() > deadline:
                failure = f"grading took longer than {run.notebook_timeout:g} s and was stopped"
            else:
                time.sleep(0.05)
        if failure is not None:
            kill_tree(worker)
            worker = None
        return worker, failure, box.limits_reached() if run.sandboxed else []


def remove_tree(folder: Path) -> None:
    """Remove a folder a student's kernel could write into, whatever it made there.

    coreutils' chmod and rm walk iteratively and never follow a link (a deep tree cannot exhaust
    the recursion, a link cannot send a chmod elsewhere), unlike Python 3.11's rmtree, whose
    error handling chmods through links (CVE-2023-6597). Left with a warning if that fails.
    """
    for command in (
        ["chmod", "-R", "--", "u+rwX", str(folder)],
        ["rm", "-rf", "--one-file-system", "--", str(folder)],
    ):
        subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
            check=False,
        )
    if os.path.lexists(folder):
        warnings.warn(f"could not remove {folder}", stacklevel=2)


def grade_in_worker(
    run: GradingRun, worker: subprocess.Popen | None, slot: int, student: str, problems: list[str]
) -> tuple[subprocess.Popen | None, dict]:
    """Autograde one student on ``worker`` (started if needed); the worker to reuse and the student's row."""
    if worker is None or worker.poll() is not None:
        worker = start_worker(run, slot)
    log_path = run.out_dir / "logs" / f"{student}.log"
    done_path = run.out_dir / "logs" / f".{student}.done"
    done_path.unlink(missing_ok=True)
    # The kernel's connection file (in a folder of the grader's) and its sockets (in a folder of
    # their own: the only host folder its sandbox can write), fresh per student, with a short
    # path (Unix sockets: 107 bytes), on a RAM disk where there is one.
    box = sandbox.KernelBox(student, run.limits) if run.sandboxed else contextlib.nullcontext()
    runtime = tempfile.mkdtemp(prefix="mlhep-kernel-", dir=sandbox.runtime_parent())
    try:
        (Path(runtime) / "sockets").mkdir()
        worker, failure, limits_reached = run_in_box(run, box, worker, student, runtime, log_path, done_path)
    finally:  # after the box: no process of the student's is left to add to the folder meanwhile
        remove_tree(Path(runtime))
    # Leaving the box killed whatever the kernel left behind.
    if limits_reached:
        problems = problems + [f"the notebook used {' and '.join(limits_reached)}, past the sandbox's limit"]
    if failure is None:
        success = json.loads(done_path.read_text())["success"]
        done_path.unlink()
        if not success:
            failure = explain_failure(log_path.read_text(errors="replace"), run.cell_timeout)
    if failure is not None:
        # No half-graded notebook must reach the feedback step.
        shutil.rmtree(run.course / "autograded" / student, ignore_errors=True)
        return worker, run.row(student, status="failed", reason="; ".join(problems + [failure]))

    values, messages = read_results(run, student)
    return worker, run.row(student, **values, status="graded", reason="; ".join(problems + messages))


# --- Results ----------------------------------------------------------------------------------


def read_results(run: GradingRun, student: str) -> tuple[dict, list[str]]:
    """The student's columns of grades.csv (score, points still to grade by hand, lateness), and what
    went wrong."""
    several = len(notebook_names(run.assignment)) > 1
    messages = []
    with gradebook(run.course) as gb:
        values = student_result(gb, run.assignment, student).row_values()
        submission = gb.find_submission(run.assignment, student)
        for notebook in submission.notebooks:
            path = run.course / "autograded" / student / run.assignment / f"{notebook.name}.ipynb"
            if not path.exists():
                continue  # missing from the submission: already reported
            scores = {
                grade.name: (grade.score, grade.max_score, grade.needs_manual_grade) for grade in notebook.grades
            }
            label = f"{notebook.name}.ipynb: " if several else ""
            messages += describe_notebook(path, scores, run.cell_timeout, label)
    return values, messages


def give_feedback(run: GradingRun, rows: list[dict]) -> None:
    """Copy the feedback HTML of the students in ``rows`` to ``OUT/feedback/<student>/``.

    The workers wrote it right after grading each student. A student whose feedback is missing
    gets a remark in their row.
    """
    for row in rows:
        pages = sorted((run.course / "feedback" / row["student"] / run.assignment).glob("*.html"))
        if not pages:
            remark = f"nbgrader could not write the feedback (see logs/{row['student']}.log)"
            row["reason"] = "; ".join(filter(None, [row["reason"], remark]))
            continue
        dest = run.out_dir / "feedback" / row["student"]
        dest.mkdir(parents=True, exist_ok=True)
        for page in pages:  # read as a regular file, never through a link
            (dest / page.name).write_bytes(read_regular_file(page.parent, page.name, MAX_FEEDBACK_BYTES))


def check_complete(rows: list[dict], students: dict[str, Path], out_dir: Path) -> None:
    """AutograderError unless grades.csv has one row per student and the grader itself failed none.

    A TA must never take an incomplete batch for a finished one: the command then exits with an
    error, after the rows that could be graded were written.
    """
    with open(out_dir / "grades.csv", newline="") as file:
        written = {row["student"] for row in csv.DictReader(file)}
    missing = sorted(set(students) - written)
    broken = sorted(row["student"] for row in rows if row["reason"].startswith(GRADER_ERROR))
    if missing or broken:
        problems = []
        if missing:
            problems.append(f"{len(missing)} students have no row in grades.csv ({', '.join(missing[:5])})")
        if broken:
            problems.append(
                f"the grader failed on {len(broken)} students ({', '.join(broken[:5])}), "
                "see their reasons in grades.csv and logs/"
            )
        raise AutograderError("the grading is INCOMPLETE: " + "; ".join(problems) + "; grade them again")


def write_csv(rows: list[dict], path: Path) -> None:
    """Write the grades, one row per student."""
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(spreadsheet_safe(row) for row in rows)


def spreadsheet_safe(row: dict) -> dict:
    """``row`` with every text that a spreadsheet would take for a formula (``= + - @``, a tab or a carriage
    return first: a reason quoting a student's error message, say) preceded by an apostrophe."""
    return {
        key: "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
        for key, value in row.items()
    }


def summary(rows: list[dict], out_dir: Path) -> str:
    """A few lines for the TA: how many were graded, how many failed and why, where to look."""
    graded = [row for row in rows if row["status"] == "graded"]
    failed = [row for row in rows if row["status"] == "failed"]
    lines = [
        f"Graded {len(graded)} of {len(rows)} students"
        + (f" ({sum(1 for row in graded if row['reason'])} with remarks)." if graded else ".")
    ]
    if failed:
        lines.append(f"Failed {len(failed)}:")
        # Group by the first reason, so that 30 times the same problem reads as one line.
        causes = Counter(row["reason"].split("; ")[0] for row in failed)
        lines += [f"  {count} x {cause}" for cause, count in causes.most_common()]
    if missing := [row["student"] for row in rows if row["status"] == MISSING]:
        lines.append(f"No submission from {len(missing)} students on the roster: {', '.join(missing[:10])}")
    if late_rows := [row for row in rows if row["late_by"]]:
        lines.append(f"Late: {len(late_rows)} ({', '.join(row['student'] for row in late_rows[:10])})")
    if flagged := [row["student"] for row in rows if late.CHANGED_AFTER_DEADLINE in row["reason"]]:
        lines.append(
            f"CHECK: {len(flagged)} submissions marked on time changed after the deadline "
            f"({', '.join(flagged[:10])}): see their reason"
        )
    if by_hand := [row for row in graded if float(row["to_grade_by_hand"]) > 0]:
        lines.append(
            f"{len(by_hand)} students have answers to grade by hand: `python -m autograder formgrader "
            f"{out_dir}`, then `python -m autograder finalize {out_dir}`"
        )
    lines.append(f"Grades:   {out_dir / 'grades.csv'}")
    lines.append(f"Feedback: {out_dir / 'feedback'}/<student>/")
    lines.append(f"Logs:     {out_dir / 'logs'}/<student>.log")
    return "\n".join(lines)
