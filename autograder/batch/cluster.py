"""Grading a class on Dask: students as tasks, results as data, one gradebook.

``python -m autograder grade ... --engine dask`` (or ``--scheduler ADDRESS``) grades each student
as one task of a ``distributed.Client``: a LocalCluster of this machine, or any scheduler whose
workers have this course installed (dask-jobqueue on Slurm or HTCondor, dask-kubernetes, a Dask
Gateway). Nothing is shared but the client's messages: no shared filesystem, no shared gradebook.

* The client prepares the run as the local pool does (held-out samples, the private course and
  its gradebook) and sends every worker a :class:`CourseBundle` once: the assignment's source,
  the held-out samples' files and the run's options.
* On its first student of a run, a worker checks that it can sandbox kernels (a worker that
  cannot refuses, with its address and the reason) and builds its own copy of the private
  course in a temporary folder. It then grades exactly as the local pool does: a long-lived
  grading process per thread (nbgrader stays imported between students), each kernel in its
  bubblewrap box, the notebook's time limit enforced by stopping that process.
* A task returns the student's row, the grades and comments of every cell, the autograded
  notebooks, the feedback pages and the log, as data. Only the client writes them: into the one
  gradebook (each student in one transaction), ``grades.csv``, ``feedback/`` and ``logs/``.
* A student whose worker dies or is lost is graded again on another worker once; a second loss
  fails that student with the reason. The batch always completes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin
from sqlalchemy.exc import SAWarning
from tqdm.auto import tqdm

from .. import sandbox
from ..course import SOLUTIONS_DIR, UsageError
from .private_course import gradebook
from .submissions import MAX_FEEDBACK_BYTES, MAX_NOTEBOOK_BYTES

#: How many times a student is graded again after the worker grading them died or was lost.
REGRADES_AFTER_LOSS = 1
#: Seconds to wait for a cluster's first worker (jobs of a batch system may queue).
WORKER_WAIT_SECONDS = 1800
#: Students sent per worker thread at a time (one grading, one waiting for it).
TASKS_PER_WORKER = 2
#: Largest log returned per student (nbgrader's log of one student is a few kB).
MAX_LOG_BYTES = 4 * 2**20
#: Stored columns of nbgrader's gradebook that autograding writes, copied from a worker's gradebook
#: to the client's (the scores and totals nbgrader shows are computed from these).
GRADE_FIELDS = ("auto_score", "manual_score", "extra_credit", "needs_manual_grade")
COMMENT_FIELDS = ("auto_comment", "manual_comment")
NOTEBOOK_FIELDS = ("flagged", "late_submission_penalty")


class WorkerRefused(RuntimeError):
    """A Dask worker that cannot grade (no sandbox, another version of the course)."""

    def __init__(self, address: str, why: str):
        super().__init__(address, why)
        self.address, self.why = address, why

    def __str__(self) -> str:
        return f"worker {self.address} refused to grade: {self.why}"


@dataclass(frozen=True)
class CourseBundle:
    """What a worker needs to grade a run's students, sent to every worker once.

    The source files are the client's, so every worker grades with the same hidden tests; the
    course's code (``mlhep``, ``autograder``) is the worker's own installation, checked to be the
    client's version.
    """

    run_id: str
    assignment: str
    version: str
    cell_timeout: float
    notebook_timeout: float
    sandboxed: bool
    limits: sandbox.Limits | None
    held_out_seed: int | None
    source_files: dict[str, bytes] = field(repr=False)
    held_out_files: dict[str, bytes] = field(repr=False)


def course_version() -> str:
    """The installed course's version (``pyproject.toml``'s), which every worker must share."""
    from importlib import metadata

    try:
        return metadata.version("mlhep-course")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_tree(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every regular file below ``folder`` (the grader's own files)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts
    }


def write_tree(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (from :func:`read_tree`) below ``folder``; no path may leave it."""
    root = folder.resolve()
    for name, data in files.items():
        path = (root / name).resolve()
        if root not in path.parents:
            raise ValueError(f"{name!r} is not a path inside the folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def make_bundle(run, held_out: dict | None) -> CourseBundle:
    """The bundle of a :class:`~autograder.batch.run.GradingRun` whose held-out samples are ``held_out``."""
    held_out_files = {}
    if held_out:
        cache = Path(held_out["cache"])
        held_out_files = {name: (cache / name).read_bytes() for name in held_out["files"]}
    return CourseBundle(
        run_id=uuid.uuid4().hex,
        assignment=run.assignment,
        version=course_version(),
        cell_timeout=run.cell_timeout,
        notebook_timeout=run.notebook_timeout,
        sandboxed=run.sandboxed,
        limits=run.limits,
        held_out_seed=held_out["seed"] if held_out else None,
        source_files=read_tree(SOLUTIONS_DIR / run.assignment),
        held_out_files=held_out_files,
    )


# --- The worker's side ------------------------------------------------------------------------


def worker_address() -> str:
    """This Dask worker's address, to name it in messages ("this process" outside a worker)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:
        return "this process"


def why_worker_cannot_grade(version: str | None = None, sandboxed: bool = True) -> str | None:
    """None if this worker can grade a run of the course at ``version``; else why not, in plain words."""
    if version is not None and course_version() != version:
        return (
            f"it has version {course_version()} of the course and the client {version}: "
            "install the same release on the workers"
        )
    if sandboxed:
        ok, why = sandbox.available()
        if not ok:
            return f"it cannot sandbox the students' kernels: {why}"
    return None


class WorkerCourse:
    """A worker's copy of a run's private course, and its grading processes (one per thread)."""

    def __init__(self, bundle: CourseBundle):
        self.folder = Path(tempfile.mkdtemp(prefix=f"mlhep-grading-{bundle.run_id[:8]}-"))
        try:
            self.run = self._make_course(bundle)
        except BaseException:
            from .run import remove_tree

            remove_tree(self.folder)
            raise
        self.idle: queue.SimpleQueue = queue.SimpleQueue()  # (slot, grading process or None)
        self.slots = 0
        self.lock = threading.Lock()

    def _make_course(self, bundle: CourseBundle):
        from .private_course import generate_assignment, make_course
        from .run import GradingRun

        source = self.folder / "source-files"
        write_tree(source, bundle.source_files)
        held_out = None
        if bundle.held_out_files:
            cache = self.folder / "held-out"
            write_tree(cache, bundle.held_out_files)
            held_out = {"seed": bundle.held_out_seed, "cache": str(cache)}
        run = GradingRun(
            bundle.assignment,
            self.folder / "submissions",
            self.folder / "out",
            cell_timeout=bundle.cell_timeout,
            notebook_timeout=bundle.notebook_timeout,
            sandboxed=bundle.sandboxed,
            limits=bundle.limits,
            held_out_seed=bundle.held_out_seed,
        )
        (run.out_dir / "logs").mkdir(parents=True)
        make_course(run.course, bundle.assignment, bundle.cell_timeout, bundle.sandboxed, held_out, source)
        run.max_score = generate_assignment(run.course, bundle.assignment)
        return run

    @contextlib.contextmanager
    def slot(self) -> Iterator[list]:
        """A grading slot of this worker: ``[slot number, grading process or None]``, given back after."""
        try:
            held = list(self.idle.get_nowait())
        except queue.Empty:
            with self.lock:
                held = [self.slots, None]
                self.slots += 1
        try:
            yield held
        finally:
            self.idle.put(tuple(held))

    def close(self) -> None:
        from .run import remove_tree, stop_worker

        while True:
            try:
                _, process = self.idle.get_nowait()
            except queue.Empty:
                break
            if process is not None:
                stop_worker(process)
        remove_tree(self.folder)


_BUNDLES: dict[str, CourseBundle] = {}
_COURSES: dict[str, WorkerCourse] = {}
_COURSES_LOCK = threading.Lock()


class GradingRunPlugin(WorkerPlugin):
    """Gives every worker of the cluster a run's bundle: those there now, and those that join or are
    restarted later (the scheduler keeps the plugin until the run unregisters it)."""

    def __init__(self, bundle: CourseBundle):
        self.bundle = bundle
        self.name = f"mlhep-grading-{bundle.run_id}"

    def setup(self, worker) -> None:
        _BUNDLES[self.bundle.run_id] = self.bundle

    def teardown(self, worker) -> None:
        _BUNDLES.pop(self.bundle.run_id, None)
        close_run(self.bundle.run_id)


def worker_course(run_id: str) -> WorkerCourse:
    """This worker's course for the run, built on its first student (WorkerRefused if it cannot)."""
    with _COURSES_LOCK:
        if run_id not in _COURSES:
            bundle = _BUNDLES.get(run_id)
            if bundle is None:
                raise RuntimeError(f"worker {worker_address()} has not received the run's course (its plugin)")
            if why := why_worker_cannot_grade(bundle.version, bundle.sandboxed):
                raise WorkerRefused(worker_address(), why)
            _COURSES[run_id] = WorkerCourse(bundle)
        return _COURSES[run_id]


def close_run(run_id: str) -> None:
    """Stop a run's grading processes on this worker and remove its course."""
    with _COURSES_LOCK:
        course = _COURSES.pop(run_id, None)
    if course is not None:
        course.close()


def grade_student(run_id: str, student: str, notebooks: dict[str, bytes], problems: list[str]) -> dict:
    """Grade one student on this worker; their results as data (see :func:`record_student`)."""
    from .run import grade_in_worker, remove_tree

    course = worker_course(run_id)
    run = course.run
    submitted = run.course / "submitted" / student / run.assignment
    write_tree(submitted, notebooks)
    try:
        with course.slot() as held:
            held[1], row = grade_in_worker(run, held[1], held[0], student, problems)
        result = {"row": row, "log": read_log(run.out_dir / "logs" / f"{student}.log"), "worker": worker_address()}
        if row["status"] == "graded":
            result.update(export_submission(run, student))
        return result
    finally:
        # One student at a time in the worker's course: nothing of theirs stays for the next.
        with contextlib.suppress(Exception), gradebook(run.course) as gb:
            gb.remove_submission(run.assignment, student)
        for folder in ("submitted", "autograded", "feedback"):
            remove_tree(run.course / folder / student)
        (run.out_dir / "logs" / f"{student}.log").unlink(missing_ok=True)


def read_log(path: Path) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as file:
        return file.read(MAX_LOG_BYTES).decode(errors="replace")


def export_submission(run, student: str) -> dict:
    """The student's grades, comments, autograded notebooks and feedback pages in this worker's course."""
    grades: dict = {}
    with gradebook(run.course) as gb:
        submission = gb.find_submission(run.assignment, student)
        timestamp = submission.timestamp
        for notebook in submission.notebooks:
            grades[notebook.name] = {
                "notebook": {name: getattr(notebook, name) for name in NOTEBOOK_FIELDS},
                "grades": {
                    grade.name: {name: getattr(grade, name) for name in GRADE_FIELDS} for grade in notebook.grades
                },
                "comments": {
                    comment.name: {name: getattr(comment, name) for name in COMMENT_FIELDS}
                    for comment in notebook.comments
                },
            }
    autograded = run.course / "autograded" / student / run.assignment
    feedback = run.course / "feedback" / student / run.assignment
    return {
        "timestamp": timestamp,
        "grades": grades,
        "autograded": {path.name: read_bounded(path, MAX_NOTEBOOK_BYTES) for path in sorted(autograded.glob("*"))},
        "feedback": {
            path.name: read_bounded(path, MAX_FEEDBACK_BYTES) for path in sorted(feedback.glob("*.html"))
        },
    }


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """A file the grader wrote, refused past ``max_bytes`` (nbgrader limits outputs, not their sum)."""
    if not path.is_file() or path.is_symlink():
        raise OSError(f"{path.name} is not a regular file")
    if path.stat().st_size > max_bytes:
        raise OSError(f"{path.name} is larger than {max_bytes // 2**20} MB")
    return path.read_bytes()


# --- The client's side ------------------------------------------------------------------------


def record_student(run, result: dict) -> dict:
    """Write what a worker returned for a graded student into the client's course; their row.

    The gradebook gets the student's submission and every grade and comment in one transaction:
    if any of it fails, none of it stays (nbgrader's ``remove_submission``), and the error is raised.
    """
    row = result["row"]
    student = row["student"]
    write_text_atomic(run.out_dir / "logs" / f"{student}.log", result["log"])
    if row["status"] != "graded":
        return row
    with gradebook(run.course) as gb:
        gb.update_or_create_student(student)
        try:
            with warnings.catch_warnings():
                # nbgrader's add_submission warns about its own use of SQLAlchemy's session, whoever calls
                # it (nbgrader autograde too, into its log); the rows are written all the same.
                warnings.simplefilter("ignore", SAWarning)
                gb.add_submission(run.assignment, student, timestamp=result["timestamp"])
            for notebook_name, values in result["grades"].items():
                notebook = gb.find_submission_notebook(notebook_name, run.assignment, student)
                for name, value in values["notebook"].items():
                    setattr(notebook, name, value)
                for grade_name, fields in values["grades"].items():
                    grade = gb.find_grade(grade_name, notebook_name, run.assignment, student)
                    for name, value in fields.items():
                        setattr(grade, name, value)
                for comment_name, fields in values["comments"].items():
                    comment = gb.find_comment(comment_name, notebook_name, run.assignment, student)
                    for name, value in fields.items():
                        setattr(comment, name, value)
            gb.db.commit()
        except BaseException:
            gb.db.rollback()
            with contextlib.suppress(Exception):
                gb.remove_submission(run.assignment, student)
            raise
    for kind, files in (("autograded", result["autograded"]), ("feedback", result["feedback"])):
        folder = run.course / kind / student / run.assignment
        folder.mkdir(parents=True, exist_ok=True)
        write_tree(folder, files)
    return row


def write_text_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, errors="replace")
    os.replace(partial, path)


def submission_files(run, student: str) -> dict[str, bytes]:
    """The notebooks of ``student`` the client copied into its course (checked there), to send."""
    folder = run.course / "submitted" / student / run.assignment
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.ipynb"))}


def check_workers(dask_client, bundle: CourseBundle) -> int:
    """The number of workers, once there is one (a batch system may take a while to start them);
    UsageError naming every worker that cannot grade, and why."""
    try:
        dask_client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except TimeoutError:
        raise UsageError(
            f"the Dask cluster has had no worker for {WORKER_WAIT_SECONDS} s: start some, or grade without "
            "--scheduler"
        ) from None
    answers = dask_client.run(why_worker_cannot_grade, bundle.version, bundle.sandboxed)
    if not answers:
        raise UsageError("the Dask cluster has no workers: start some, or grade without --scheduler")
    refused = {address: why for address, why in answers.items() if why}
    if refused:
        lines = "; ".join(f"worker {address}: {why}" for address, why in sorted(refused.items()))
        raise UsageError(
            f"{len(refused)} of {len(answers)} Dask workers cannot grade ({lines}); fix them or "
            "remove them from the cluster"
        )
    return len(answers)


def grade_class_on_dask(
    run, students_to_grade: list[tuple[str, list[str]]], bundle: CourseBundle, dask_client, already: int = 0
) -> dict[str, dict]:
    """Grade ``(student, problems)`` on ``dask_client``'s workers; the rows by student.

    Rows come back as students finish; a student whose worker dies or is lost is submitted again
    (``REGRADES_AFTER_LOSS`` times), then failed with the reason. The grader's own failures fail
    the student with a reason starting with ``GRADER_ERROR``. ``already``: students of the class
    whose row is already decided (no notebook to grade), for the progress bar.
    """
    from distributed import KilledWorker, as_completed

    from .run import GRADER_ERROR

    check_workers(dask_client, bundle)
    plugin = GradingRunPlugin(bundle)
    dask_client.register_plugin(plugin)
    rows: dict[str, dict] = {}
    problems_of = dict(students_to_grade)
    losses: dict[str, int] = {}
    attempts: dict[str, int] = {}
    # Workers that joined after the check and refused: their students go to the others.
    refused: dict[str, str] = {}

    def submit(student: str):
        attempts[student] = attempts.get(student, 0) + 1
        allowed = [address for address in dask_client.nthreads() if address not in refused] if refused else None
        return dask_client.submit(
            grade_student,
            bundle.run_id,
            student,
            submission_files(run, student),
            problems_of[student],
            key=f"grade-{bundle.run_id}-{student}-{attempts[student]}",
            pure=False,
            retries=0,
            workers=allowed,
            allow_other_workers=False,
        )

    # A few tasks per worker at a time, more as results come back: the notebooks of a class of 1000 never
    # wait in the scheduler's memory all at once, and the ones waiting go to whichever worker is free.
    waiting = [student for student, _ in students_to_grade]
    window = TASKS_PER_WORKER * max(1, len(dask_client.nthreads()))
    futures = {submit(student): student for student in waiting[:window]}
    waiting = waiting[window:]
    pending = as_completed(list(futures))
    progress = tqdm(
        total=already + len(students_to_grade), initial=already, desc=f"grading {run.assignment}", unit="student"
    )
    try:
        for future in pending:
            student = futures.pop(future)
            try:
                result = future.result()
                rows[student] = record_student(run, result)
            except WorkerRefused as error:
                refused[error.address] = error.why
                if any(address not in refused for address in dask_client.nthreads()):
                    retry = submit(student)
                    futures[retry] = student
                    pending.add(retry)
                    continue
                rows[student] = run.row(student, status="failed", reason=f"{GRADER_ERROR}: {error}")
            except KilledWorker:
                losses[student] = losses.get(student, 0) + 1
                if losses[student] <= REGRADES_AFTER_LOSS:
                    retry = submit(student)
                    futures[retry] = student
                    pending.add(retry)
                    continue
                rows[student] = run.row(
                    student,
                    status="failed",
                    reason=f"the worker grading this submission died or was lost {losses[student]} times "
                    "(see the workers' logs: a worker out of memory, a node taken back)",
                )
            except Exception as error:  # noqa: BLE001 - the grader's own failure: reported, batch goes on
                rows[student] = run.row(
                    student, status="failed", reason=f"{GRADER_ERROR}: {type(error).__name__}: {error}"
                )
            finally:
                future.release()
            if waiting:
                following = waiting.pop(0)
                next_future = submit(following)
                futures[next_future] = following
                pending.add(next_future)
            progress.set_postfix_str(student)
            progress.update()
    finally:
        progress.close()
        with contextlib.suppress(Exception):  # each worker's teardown removes its course
            dask_client.unregister_worker_plugin(plugin.name)
    return rows


def grade_on_dask(
    run, students_to_grade: list[tuple[str, list[str]]], held_out: dict | None, workers: int, already: int = 0
) -> dict[str, dict]:
    """Grade on the run's scheduler, or on a LocalCluster of ``workers`` processes; the rows by student."""
    from data_fetch import DataFetchError
    from data_fetch import cluster as dask_cluster

    bundle = make_bundle(run, held_out)
    config = {
        # A worker that dies with a student is reported at once (KilledWorker) on a LocalCluster, so that
        # this module decides the one regrade; a named scheduler keeps its own allowed-failures.
        "distributed.scheduler.allowed-failures": 0,
        # The workers grade in this process's environment, as the pool does: Dask would otherwise set one
        # thread of OpenMP and BLAS for them, and so for the students' kernels and the tests.
        "distributed.nanny.pre-spawn-environ": {},
    }
    try:
        with dask_cluster.client(workers, run.scheduler, config=config) as dask_client:
            return grade_class_on_dask(run, students_to_grade, bundle, dask_client, already)
    except DataFetchError as error:
        raise UsageError(str(error)) from None
