"""Grade a class's submissions of one assignment with nbgrader.

The grading happens in a private nbgrader course inside the output folder, never in the
repository: ``OUT/nbgrader/`` has its own ``nbgrader_config.py``, a copy of the assignment's
solutions as nbgrader's source, its own ``gradebook.db``, and ``submitted/<student>/...``.
Students are autograded by a few long-lived worker processes (``autograder.worker``), one
student at a time each, under a wall-clock limit per student, so no submission can stop the
batch; and each student's kernel runs in a bubblewrap sandbox
(``autograder.sandbox``): it cannot read the hidden tests' source, the gradebook or other
submissions, reach the network, or signal the grader. The results go to ``OUT/grades.csv``
and ``OUT/feedback/``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import queue
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import nbformat
import psutil
from nbgrader.api import Gradebook
from tqdm.auto import tqdm

from . import sandbox
from .course import (
    COURSE_CONFIG,
    EXERCISES_DIR,
    SOLUTIONS_DIR,
    AutograderError,
    UsageError,
    check_assignment,
    kill_tree,
    nbgrader_api,
    notebook_names,
)
from .diagnose import describe_notebook, explain_failure, notebook_problem
from .worker import ADDRESS_SPACE_VARIABLE

#: Address space of a grading worker (see autograder.worker). Measured: a worker grading lesson 03
#: (nbgrader, scikit-learn, the held-out sample) reserves about WORKER_MEASURED; the limit leaves a
#: wide margin and stops a worker long before the machine's memory is at stake.
WORKER_ADDRESS_SPACE = 4 * 2**30

# to_grade_by_hand: points of cells (e.g. written answers) that wait for a person in the formgrader;
# until then they count 0 in `score`.
COLUMNS = ["student", "assignment", "score", "max_score", "to_grade_by_hand", "status", "reason"]
COURSE_ID = "mlhep"  # as in the repository's nbgrader_config.py
GRADEBOOK_LOCK_TIMEOUT = 120  # seconds a worker waits for another's write to the gradebook
#: Starts the reason of a student whom the grader itself failed (not their notebook): the run is
#: then incomplete, and the command says so and exits with an error after writing grades.csv.
GRADER_ERROR = "not graded, because of an error in the grader"

# The private course's configuration. It loads the repository's configuration first, so that
# the code stub (part of the checksums nbgrader records) and everything else are the course's.
CONFIG_TEMPLATE = '''\
"""nbgrader configuration of a private grading course, written by autograder.grade."""

c = get_config()  # noqa: F821
load_subconfig({course_config!r})  # noqa: F821  (the course's own settings)

# Paths from this file's folder: a copy of the output folder works on its own files.
import os  # noqa: E402

_course = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = _course
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_course, "gradebook.db") + "?timeout={lock_timeout}"

# Per-cell time limit. nbgrader's Execute has its own timeout trait, so both are set.
# A cell past it is interrupted and the notebook goes on: the tests it broke score 0.
c.Execute.timeout = {cell_timeout}
c.ExecutePreprocessor.timeout = {cell_timeout}
c.Execute.interrupt_on_timeout = True
c.ExecutePreprocessor.interrupt_on_timeout = True
# After the last cell the kernel has nothing more to give: stop it at once rather than wait for
# it to wind down (the sandbox's box then ends whatever it started).
c.Execute.shutdown_kernel = "immediate"

# The test cells run in this (the grader's) process, not in the student's kernel
# (autograder.trusted); the rest of nbgrader's autograde steps are its defaults.
c.Autograde.autograde_preprocessors = [
    "autograder.trusted.TrustedExecute",
    "autograder.pages.SanitizeStudentContent",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.TrustedExecute.source_root = os.path.join(_course, "source")
# The held-out samples of this run (mlhep.held_out): their seed and the grader's own cache.
c.TrustedExecute.held_out_seed = {held_out_seed!r}
c.TrustedExecute.held_out_cache = {held_out_cache!r}

# Feedback without the hidden tests (nbgrader 0.9.6 would show them).
c.GenerateFeedback.exporter_class = "autograder.feedback.FeedbackExporter"
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "autograder.feedback.HideHiddenTests",
    "autograder.pages.SanitizeStudentContent",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# Every page rendered from a student's notebook (feedback, formgrader) shows nothing active.
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.filters = {{"clean_html": "autograder.pages.clean_html"}}
c.HTMLExporter.preprocessors = ["autograder.pages.SanitizeStudentContent"]
'''


def grade(assignment: str, submissions_dir: str | Path, out_dir: str | Path,
          cell_timeout: float = 300, notebook_timeout: float = 900, sandboxed: bool = True,
          workers: int | None = None, limits: sandbox.Limits | None = None,
          held_out_seed: int | None = None) -> list[dict]:
    """Autograde every student's submission of ``assignment``.

    Args:
        assignment: name of a folder in ``solutions/``.
        submissions_dir: one folder per student, named by the student id, holding the
            assignment's notebook(s) directly or in a subfolder named like the assignment; or
            an nbgrader exchange folder (see :func:`find_students`).
        out_dir: where to write ``grades.csv``, ``feedback/<student>/``, ``logs/`` and the
            private nbgrader course ``nbgrader/`` (the outputs of an earlier run are replaced).
        cell_timeout: seconds a cell may run before it is interrupted.
        notebook_timeout: seconds the grading of one student may take before it is stopped.
        sandboxed: run each student's kernel in a bubblewrap sandbox (``autograder.sandbox``).
            Without it a notebook can read the hidden tests and the gradebook and change them:
            only for notebooks you trust.
        workers: students graded at the same time (default: one more than the cores, memory permitting).
        limits: memory and processes of each student's kernel (default: ``sandbox.Limits()``).
        held_out_seed: seed of the held-out samples the quality tests judge with (default: one drawn
            at random for this run); recorded in ``OUT/held_out.json`` so a run can be repeated.

    Returns:
        One row per student, as written to ``grades.csv`` (keys: see ``COLUMNS``).

    Raises:
        UsageError: unknown assignment, no student folders, output folder not writable,
            time limits not positive, no sandbox possible (unless ``sandboxed=False``).
    """
    check_assignment(assignment)
    if cell_timeout <= 0 or notebook_timeout <= 0:
        raise UsageError("the time limits must be positive numbers of seconds")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UsageError(f"the number of workers must be a positive integer, got {workers!r}")
    if sandboxed:
        ok, why = sandbox.available()
        if not ok:
            raise UsageError(f"{why}. Student notebooks are untrusted code, so grading stops here; "
                             "to grade notebooks you trust without a sandbox, pass --unsafe-no-sandbox")
        limits = sandbox.Limits() if limits is None else limits
        print(f"autograder: each kernel in a sandbox, with {sandbox.describe_limits(limits)}")
    else:
        print("autograder: WARNING: grading WITHOUT a sandbox (--unsafe-no-sandbox): the notebooks can "
              "read the hidden tests and change the gradebook")
    students = find_students(Path(submissions_dir), assignment)
    out_dir = prepare_out_dir(Path(out_dir), Path(submissions_dir))
    held_out = prepare_held_out(assignment, out_dir, held_out_seed)
    course = make_course(out_dir / "nbgrader", assignment, cell_timeout, sandboxed, held_out)
    # The workers start first: each takes seconds to import nbgrader, in parallel with the rest.
    workers = default_workers(limits) if workers is None else workers
    pool = [start_worker(slot, course, assignment, out_dir, sandboxed)
            for slot in range(min(workers, len(students)))]
    try:
        max_score = generate_assignment(course, assignment)
        rows = grade_class(course, assignment, students, max_score, out_dir, cell_timeout, notebook_timeout,
                           sandboxed, pool, limits)
    finally:
        for worker in pool:
            if worker.poll() is None:
                kill_tree(worker)
    give_feedback(course, assignment, [row for row in rows if row["status"] == "graded"], out_dir)

    write_csv(rows, out_dir / "grades.csv")
    print(summary(rows, out_dir))
    check_complete(rows, students, out_dir)
    return rows


# --- Checking the input ---------------------------------------------------------------------

def find_students(submissions_dir: Path, assignment: str | None = None) -> dict[str, Path]:
    """Student id -> folder with their submission.

    ``submissions_dir`` is either one folder per student (named by the student id; hidden
    folders skipped), or nbgrader's exchange: its root, a course in it or that course's
    ``inbound/`` folder, whose ``STUDENT+ASSIGNMENT+TIMESTAMP[+...]`` folders hold what students
    submitted with ``nbgrader submit``. From the exchange, each student's latest submission of
    ``assignment`` is graded.
    """
    if not submissions_dir.is_dir():
        raise UsageError(f"the submissions folder {submissions_dir} does not exist")
    inbound = exchange_inbound(submissions_dir)
    if inbound is not None:
        latest: dict[str, tuple[str, Path]] = {}
        for folder in inbound.iterdir():
            match = EXCHANGE_SUBMISSION.match(folder.name)
            if folder.is_dir() and match and match["assignment"] == assignment:
                student, timestamp = match["student"], match["timestamp"]
                if student not in latest or timestamp > latest[student][0]:
                    latest[student] = (timestamp, folder)
        if not latest:
            raise UsageError(f"the exchange folder {inbound} has no submissions of {assignment}")
        return {student: folder for student, (_, folder) in latest.items()}
    students = {folder.name: folder for folder in submissions_dir.iterdir()
                if folder.is_dir() and not folder.name.startswith(".")}
    if not students:
        raise UsageError(f"the submissions folder {submissions_dir} has no student folders "
                         "(expected one folder per student, named by the student id)")
    return students


# nbgrader's exchange names a submission STUDENT+ASSIGNMENT+TIMESTAMP, with "+RANDOM" in newer versions;
# the timestamps ("2026-11-22 10:31:02.123456 UTC") sort in time order as text.
EXCHANGE_SUBMISSION = re.compile(r"^(?P<student>[^+]+)\+(?P<assignment>[^+]+)\+(?P<timestamp>[^+]+)(\+[^+]*)?$")


def exchange_inbound(folder: Path) -> Path | None:
    """The ``inbound`` folder if ``folder`` is an nbgrader exchange, a course in it, or the folder itself."""
    candidates = [folder] + [folder / "inbound"] + [course / "inbound" for course in folder.iterdir()
                                                    if course.is_dir() and folder.name != "inbound"]
    for candidate in candidates:
        if candidate.name == "inbound" and candidate.is_dir():
            return candidate
    return None


def prepare_out_dir(out_dir: Path, submissions_dir: Path) -> Path:
    """Create ``out_dir``, check that it is writable, and remove an earlier run's outputs."""
    out_dir = out_dir.resolve()
    for protected in (submissions_dir.resolve(), SOLUTIONS_DIR, EXERCISES_DIR):
        if out_dir == protected or protected in out_dir.parents:
            raise UsageError(f"the output folder {out_dir} must not be inside {protected}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"cannot write to the output folder {out_dir}: "
                         f"{error.strerror or error}") from None
    for old in ("nbgrader", "feedback", "logs"):
        shutil.rmtree(out_dir / old, ignore_errors=True)
    for old in ("grades.csv", HELD_OUT_RECORD):
        (out_dir / old).unlink(missing_ok=True)
    (out_dir / "logs").mkdir()
    return out_dir


# --- The private nbgrader course ------------------------------------------------------------

def make_course(root: Path, assignment: str, cell_timeout: float, sandboxed: bool = True,
                held_out: dict | None = None) -> Path:
    """Create the private nbgrader course at ``root`` with a copy of the assignment's source.

    ``held_out``: the run's held-out samples (:func:`prepare_held_out`); None for an assignment
    whose tests use none."""
    shutil.copytree(SOLUTIONS_DIR / assignment, root / "source" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    if sandboxed:
        sandbox.write_kernelspec(root / "jupyter" / "kernels")
    config = CONFIG_TEMPLATE.format(course_config=str(COURSE_CONFIG), lock_timeout=GRADEBOOK_LOCK_TIMEOUT,
                                    course_id=COURSE_ID, cell_timeout=max(1, round(cell_timeout)),
                                    held_out_seed=held_out["seed"] if held_out else None,
                                    held_out_cache=held_out["cache"] if held_out else "")
    if sandboxed:
        # Whatever kernel a submitted notebook asks for, it runs on the sandboxed one.
        config += f"\nc.TrustedExecute.kernel_name = {sandbox.KERNEL_NAME!r}\n"
    (root / "nbgrader_config.py").write_text(config)
    create_gradebook(root)
    return root


def create_gradebook(course: Path) -> None:
    """The private course's empty gradebook, made as nbgrader makes one.

    nbgrader's ``Gradebook`` creates its tables and records the database schema's version, which
    it learns by running the ``alembic heads`` command: a new Python process that imports
    nbgrader again (seconds). Here that version comes from alembic's API in this process.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    config = Config()
    config.set_main_option("script_location", ALEMBIC_DIR)
    head = ScriptDirectory.from_config(config).get_current_head()
    with contextlib.closing(sqlite3.connect(course / "gradebook.db")) as db, db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (head,))
    with gradebook(course):  # nbgrader adds its tables to a database that has some
        pass


def gradebook(course: Path) -> Gradebook:
    """The private course's gradebook (use it in a ``with`` block)."""
    return Gradebook(gradebook_url(course), course_id=COURSE_ID)


def gradebook_url(course: Path) -> str:
    # Workers write to the gradebook at the same time: wait for a lock rather than fail at once.
    return f"sqlite:///{course / 'gradebook.db'}?timeout={GRADEBOOK_LOCK_TIMEOUT}"


def generate_assignment(course: Path, assignment: str) -> float:
    """Record the assignment, its test cells and hidden tests in the gradebook; its max score.

    nbgrader's API runs in this process: it reads only the assignment's source, and a new
    nbgrader process would spend seconds importing it again.
    """
    api, _ = nbgrader_api(course)
    result = api.generate_assignment(assignment, force=True)  # the gradebook exists (make_course)
    output = result.get("log", "") + result.get("error", "")
    (course / "generate_assignment.log").write_text(output)
    if not result.get("success"):
        raise AutograderError(f"nbgrader generate_assignment failed for {assignment}:\n{output}")
    with gradebook(course) as gb:
        return gb.find_assignment(assignment).max_score


# --- Held-out samples: the grader's secret --------------------------------------------------

HELD_OUT_RECORD = "held_out.json"  # in the output folder: the seed and samples of the run


def grader_cache_dir() -> Path:
    """The grader's own data cache (``$MLHEP_GRADER_CACHE``, else the user cache folder
    ``mlhep-course-grader``): held-out samples live here, out of the students' kernels' reach."""
    import platformdirs

    folder = os.environ.get("MLHEP_GRADER_CACHE") or platformdirs.user_cache_dir("mlhep-course-grader")
    return Path(folder).expanduser().resolve()


def held_out_samples(assignment: str) -> list[tuple[str, int]]:
    """(dataset, n_events) of every ``held_out_sample("NAME", n_events=N)`` call in the assignment's
    test cells (found in their source, so the tests alone say what the grader must prepare)."""
    import ast

    found = set()
    for path in sorted((SOLUTIONS_DIR / assignment).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or "held_out_sample" not in cell.source:
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
                        == "held_out_sample"):
                    arguments = {"name": node.args[0] if node.args else None,
                                 "n_events": node.args[1] if len(node.args) > 1 else None}
                    arguments.update({keyword.arg: keyword.value for keyword in node.keywords})
                    try:
                        found.add((ast.literal_eval(arguments["name"]), ast.literal_eval(arguments["n_events"])))
                    except (ValueError, TypeError) as error:
                        raise AutograderError(f"{path.name}: held_out_sample must be called with a literal "
                                              f"dataset name and n_events ({error})") from None
    return sorted(found)


def prepare_held_out(assignment: str, out_dir: Path, seed: int | None = None) -> dict | None:
    """Generate the assignment's held-out samples for this run into the grader's cache.

    The seed is drawn at random unless given; it and the samples are recorded in
    ``OUT/held_out.json``. Neither the seed nor the cache is visible in a student's sandbox
    (checked here), so no kernel can read or regenerate the events whose labels judge it.
    """
    import secrets

    import data_fetch

    samples = held_out_samples(assignment)
    if not samples:
        return None
    if seed is None:
        seed = secrets.randbelow(2**63)
    elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"the held-out seed must be a non-negative integer, got {seed!r}")
    cache = grader_cache_dir()
    if (visible := sandbox.visible_folder(cache)) is not None:
        raise UsageError(f"the grader's cache {cache} lies in {visible}, which students' kernels can read; "
                         "set MLHEP_GRADER_CACHE to a folder outside it")
    for name, n_events in samples:
        print(f"autograder: held-out sample {name} ({n_events} events) for this run")
        data_fetch.load(name, n_events=n_events, seed=seed, source="pythia", cache_dir=cache)
    record = {"seed": seed, "cache": str(cache), "samples": [list(sample) for sample in samples]}
    (out_dir / HELD_OUT_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record


# --- One student ----------------------------------------------------------------------------

def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(limits: sandbox.Limits | None = None) -> int:
    """One worker more than the cores, as long as each student's kernel can have its memory limit
    (plus about 1 GiB for the worker itself) at the same time.

    A worker leaves its core idle for moments (while a kernel starts, between a test's messages):
    the extra worker fills them. Measured on two cores, 100 students of lesson 00: 202 s with
    three workers, 215 s with two.
    """
    memory_bytes = (limits or sandbox.Limits()).memory_bytes + 2**30
    return max(1, min(usable_cores() + 1, psutil.virtual_memory().total // memory_bytes))


def grade_class(course: Path, assignment: str, students: dict[str, Path], max_score: float, out_dir: Path,
                cell_timeout: float, notebook_timeout: float, sandboxed: bool, pool: list[subprocess.Popen],
                limits: sandbox.Limits | None = None) -> list[dict]:
    """Pre-check every submission, then autograde them on the worker processes of ``pool`` at once.

    Each worker (``autograder.worker``) grades one student at a time; a worker that passes
    ``notebook_timeout`` on a student, or dies, is stopped with everything it started and
    replaced, and that student fails with the reason. The rows come back sorted by student.
    """
    rows: dict[str, dict] = {}
    pending: queue.Queue = queue.Queue()
    for student, folder in sorted(students.items()):
        row = {"student": student, "assignment": assignment, "score": 0.0, "max_score": max_score,
               "to_grade_by_hand": 0.0}
        problems = copy_submission(folder, course / "submitted" / student / assignment, assignment)
        submitted = course / "submitted" / student / assignment
        if any((submitted / name).exists() for name in notebook_names(assignment)):
            pending.put((student, row, problems))
        else:
            rows[student] = {**row, "status": "failed", "reason": "; ".join(problems)}

    progress = tqdm(total=len(students), initial=len(rows), desc=f"grading {assignment}", unit="student")
    lock = threading.Lock()

    def run_slot(slot: int) -> None:
        worker = pool[slot]
        try:
            while True:
                try:
                    student, row, problems = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    worker, result = grade_in_worker(worker, slot, course, assignment, student, row, problems,
                                                     out_dir, cell_timeout, notebook_timeout, sandboxed, limits)
                except Exception as error:  # noqa: BLE001 - the grader's own failure: reported, batch goes on
                    result = {**row, "status": "failed",
                              "reason": f"{GRADER_ERROR}: {type(error).__name__}: {error}"}
                with lock:
                    rows[student] = result
                    progress.set_postfix_str(student)
                    progress.update()
        finally:
            if worker is not None:
                stop_worker(worker)

    slots = [threading.Thread(target=run_slot, args=(slot,), name=f"grading-slot-{slot}")
             for slot in range(min(len(pool), pending.qsize()))]
    for thread in slots:
        thread.start()
    for worker in pool[len(slots):]:  # more workers than submissions to grade
        stop_worker(worker)
    for thread in slots:
        thread.join()
    progress.close()
    for student in set(students) - set(rows):  # a slot that died: never a student without a row
        rows[student] = {"student": student, "assignment": assignment, "score": 0.0, "max_score": max_score,
                         "to_grade_by_hand": 0.0, "status": "failed",
                         "reason": f"{GRADER_ERROR}: the grader stopped before it graded this student"}
    return [rows[student] for student in sorted(rows)]


def start_worker(slot: int, course: Path, assignment: str, out_dir: Path, sandboxed: bool) -> subprocess.Popen:
    """A grading worker process for the private course (see autograder.worker)."""
    env = dict(os.environ)  # the gradebook exists already (make_course): no `alembic` command to find
    if sandboxed:  # the private course's kernelspec, which starts the kernel in the sandbox
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(course / "jupyter"),
                                                            os.environ.get("JUPYTER_PATH")]))
        # Only sandboxed: a kernel started without the launcher would inherit the worker's limit.
        env[ADDRESS_SPACE_VARIABLE] = str(WORKER_ADDRESS_SPACE)
    with open(out_dir / "logs" / f"worker-{slot}.log", "a") as log:
        return subprocess.Popen([sys.executable, "-m", "autograder.worker", str(course), assignment],
                                cwd=course, env=env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # its own process group, see kill_tree


def stop_worker(worker: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        worker.stdin.close()  # a worker ends at the end of its input
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill_tree(worker)


def grade_in_worker(worker: subprocess.Popen | None, slot: int, course: Path, assignment: str, student: str,
                    row: dict, problems: list[str], out_dir: Path, cell_timeout: float, notebook_timeout: float,
                    sandboxed: bool, limits: sandbox.Limits | None = None) -> tuple[subprocess.Popen | None, dict]:
    """Autograde one student on ``worker`` (started if needed); the worker to reuse and the student's row."""
    if worker is None or worker.poll() is not None:
        worker = start_worker(slot, course, assignment, out_dir, sandboxed)
    log_path = out_dir / "logs" / f"{student}.log"
    done_path = out_dir / "logs" / f".{student}.done"
    done_path.unlink(missing_ok=True)
    # The kernel's connection file (in a folder of the grader's) and its sockets (in a folder of
    # their own: the only host folder its sandbox can write), fresh per student, with a short
    # path (Unix sockets: 107 bytes), on a RAM disk where there is one.
    box = sandbox.KernelBox(student, limits) if sandboxed else contextlib.nullcontext()
    with box, tempfile.TemporaryDirectory(prefix="mlhep-kernel-", dir=sandbox.runtime_parent()) as runtime:
        (Path(runtime) / "sockets").mkdir()
        environment = {"JUPYTER_RUNTIME_DIR": runtime, **(box.environment() if sandboxed else {})}
        request = {"student": student, "environment": environment,
                   "kernel_sockets": f"{runtime}/sockets/kernel" if sandboxed else None,
                   "log": str(log_path), "result": str(done_path)}
        failure = None
        try:
            worker.stdin.write(json.dumps(request) + "\n")
            worker.stdin.flush()
        except OSError:
            failure = "the grading worker could not take this submission"
        deadline = time.monotonic() + notebook_timeout
        while failure is None and not done_path.exists():
            if worker.poll() is not None:
                failure = "the grading worker stopped while grading this submission (see the log)"
            elif time.monotonic() > deadline:
                failure = f"grading took longer than {notebook_timeout:g} s and was stopped"
            else:
                time.sleep(0.05)
        if failure is not None:
            kill_tree(worker)
            worker = None
        limits_reached = box.limits_reached() if sandboxed else []
    # Leaving the box killed whatever the kernel left behind.
    if limits_reached:
        problems = problems + [f"the notebook used {' and '.join(limits_reached)}, past the sandbox's limit"]
    if failure is None:
        success = json.loads(done_path.read_text())["success"]
        done_path.unlink()
        if not success:
            failure = explain_failure(log_path.read_text(errors="replace"), cell_timeout)
    if failure is not None:
        # No half-graded notebook must reach the feedback step.
        shutil.rmtree(course / "autograded" / student, ignore_errors=True)
        return worker, {**row, "status": "failed", "reason": "; ".join(problems + [failure])}

    score, by_hand, messages = read_results(course, assignment, student, cell_timeout)
    return worker, {**row, "score": score, "to_grade_by_hand": by_hand, "status": "graded",
                    "reason": "; ".join(problems + messages)}


#: Largest notebook accepted (the course's notebooks are well under 1 MB without outputs).
MAX_NOTEBOOK_BYTES = 64 * 2**20
MAX_FEEDBACK_BYTES = 256 * 2**20


def read_regular_file(folder: Path, name: str, max_bytes: int) -> bytes:
    """The bytes of ``folder/name``, read without following a symbolic link anywhere on the way.

    Raises OSError (with a plain-words ``strerror``) for a link, a special file (a FIFO, a
    device) or a file over ``max_bytes``: a submission is the student's files, never what they
    point to.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(error.errno, "the submission's folder is a symbolic link") from None
        raise
    try:
        try:
            fd = os.open(name, flags, dir_fd=directory)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise OSError(error.errno, "it is a symbolic link, not a file") from None
            raise
        with open(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "it is not a regular file")
            data = file.read(max_bytes + 1)
    finally:
        os.close(directory)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"it is larger than {max_bytes // 2**20} MB")
    return data


def submission_folder(folder: Path, assignment: str) -> Path:
    """The folder holding the notebooks: the student's, or its subfolder named like the assignment
    (a real folder, not a link)."""
    inner = folder / assignment
    return inner if inner.is_dir() and not inner.is_symlink() else folder


def copy_submission(folder: Path, dest: Path, assignment: str) -> list[str]:
    """Copy the assignment's notebooks from a student's submission to ``dest``.

    Only the notebooks are copied, each only if it is a regular file of a sane size, read without
    following links; other files are left out, so nothing but notebooks reaches nbgrader (which
    would copy them on into the feedback). Notebooks nbgrader cannot read are left out too.
    Returns the problems found, in plain words (an empty list when there are none).
    """
    folder = submission_folder(folder, assignment)
    dest.mkdir(parents=True, exist_ok=True)
    problems = []
    names = notebook_names(assignment)
    for name in names:
        path = dest / name
        try:
            path.write_bytes(read_regular_file(folder, name, MAX_NOTEBOOK_BYTES))
        except FileNotFoundError:
            others = sorted(p.name for p in folder.glob("*.ipynb") if p.name not in names)
            found = f" (found: {', '.join(others)})" if others else ""
            problems.append(f"no notebook named {name} in the submission{found}")
            continue
        except OSError as error:
            problems.append(f"{name} was not graded: {error.strerror or error}")
            continue
        if problem := notebook_problem(path):
            # nbgrader would stop at this file; without it, it grades the other notebooks
            # and gives this one 0.
            path.unlink()
            problems.append(f"{name} is {problem}" if len(names) > 1 else problem)
        else:
            problems += unmark_unknown_cells(path, SOLUTIONS_DIR / assignment / name)
    return problems


def unmark_unknown_cells(path: Path, source: Path) -> list[str]:
    """Strip nbgrader's metadata from cells the assignment does not have (e.g. a test cell the
    student added), which nbgrader would refuse the whole notebook for; they run as ordinary cells."""
    known = {cell.metadata["nbgrader"].get("grade_id") for cell in nbformat.read(source, as_version=4).cells
             if "nbgrader" in cell.metadata}
    notebook = nbformat.read(path, as_version=4)
    unknown = [cell for cell in notebook.cells
               if "nbgrader" in cell.metadata and cell.metadata["nbgrader"].get("grade_id") not in known]
    if not unknown:
        return []
    for cell in unknown:
        del cell.metadata["nbgrader"]
    nbformat.write(notebook, path)
    names = ", ".join(sorted({str(cell.id) for cell in unknown}))
    return [f"cells with nbgrader marks the assignment does not have (ids {names}) ran as ordinary cells"]


def read_results(course: Path, assignment: str, student: str,
                 cell_timeout: float) -> tuple[float, float, list[str]]:
    """The student's score, the points still to grade by hand, and what went wrong."""
    names = notebook_names(assignment)
    messages = []
    with gradebook(course) as gb:
        submission = gb.find_submission(assignment, student)
        score = submission.score
        by_hand = sum(grade.max_score for notebook in submission.notebooks for grade in notebook.grades
                      if grade.needs_manual_grade)
        for notebook in submission.notebooks:
            path = course / "autograded" / student / assignment / f"{notebook.name}.ipynb"
            if not path.exists():
                continue  # missing from the submission: already reported
            scores = {grade.name: (grade.score, grade.max_score, grade.needs_manual_grade)
                      for grade in notebook.grades}
            label = f"{notebook.name}.ipynb: " if len(names) > 1 else ""
            messages += describe_notebook(path, scores, cell_timeout, label)
    return score, by_hand, messages


def give_feedback(course: Path, assignment: str, rows: list[dict], out_dir: Path) -> None:
    """Copy the feedback HTML of the students in ``rows`` to ``OUT/feedback/<student>/``.

    The workers wrote it right after grading each student. A student whose feedback is missing
    gets a remark in their row.
    """
    for row in rows:
        pages = sorted((course / "feedback" / row["student"] / assignment).glob("*.html"))
        if not pages:
            remark = f"nbgrader could not write the feedback (see logs/{row['student']}.log)"
            row["reason"] = "; ".join(filter(None, [row["reason"], remark]))
            continue
        dest = out_dir / "feedback" / row["student"]
        dest.mkdir(parents=True, exist_ok=True)
        for page in pages:  # read as a regular file, never through a link
            (dest / page.name).write_bytes(read_regular_file(page.parent, page.name, MAX_FEEDBACK_BYTES))


def check_complete(rows: list[dict], students: dict[str, Path], out_dir: Path) -> None:
    """AutograderError unless grades.csv has one row per student and the grader itself failed none.

    A TA must never take an incomplete batch for a finished one: the command then exits with an
    error, after the rows that could be graded were written.
    """
    written = {row["student"] for row in csv.DictReader(open(out_dir / "grades.csv", newline=""))}
    missing = sorted(set(students) - written)
    broken = sorted(row["student"] for row in rows if row["reason"].startswith(GRADER_ERROR))
    if missing or broken:
        raise AutograderError(
            "the grading is INCOMPLETE: "
            + "; ".join(filter(None, [f"{len(missing)} students have no row in grades.csv ({', '.join(missing[:5])})"
                                      if missing else "",
                                      f"the grader failed on {len(broken)} students ({', '.join(broken[:5])}), "
                                      "see their reasons in grades.csv and logs/" if broken else ""]))
            + "; grade them again")


# --- Results ----------------------------------------------------------------------------------

def write_csv(rows: list[dict], path: Path) -> None:
    """Write the grades, one row per student."""
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def summary(rows: list[dict], out_dir: Path) -> str:
    """A few lines for the TA: how many were graded, how many failed and why, where to look."""
    graded = [row for row in rows if row["status"] == "graded"]
    failed = [row for row in rows if row["status"] == "failed"]
    lines = [f"Graded {len(graded)} of {len(rows)} students"
             + (f" ({sum(1 for row in graded if row['reason'])} with remarks)." if graded else ".")]
    if failed:
        lines.append(f"Failed {len(failed)}:")
        # Group by the first reason, so that 30 times the same problem reads as one line.
        causes = Counter(row["reason"].split("; ")[0] for row in failed)
        lines += [f"  {count} x {cause}" for cause, count in causes.most_common()]
    lines.append(f"Grades:   {out_dir / 'grades.csv'}")
    lines.append(f"Feedback: {out_dir / 'feedback'}/<student>/")
    lines.append(f"Logs:     {out_dir / 'logs'}/<student>.log")
    return "\n".join(lines)
