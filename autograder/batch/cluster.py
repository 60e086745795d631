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
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin
from tqdm.auto import tqdm

from .. import sandbox
from ..course import SOLUTIONS_DIR, UsageError
from . import late
from .private_course import gradebook
from .submissions import MAX_FEEDBACK_BYTES, MAX_NOTEBOOK_BYTES, read_regular_file

#: How many times a student is graded again after the worker grading them died or was lost.
REGRADES_AFTER_LOSS = 1
#: Seconds to wait for a cluster's first worker (jobs of a batch system may queue).
WORKER_WAIT_SECONDS = 1800
#: Students sent per worker thread at a time: one, so that a worker lost holds no student waiting.
TASKS_PER_WORKER = 1
#: Seconds between looks at the cluster while students are being graded.
POLL_SECONDS = 5
#: Times a student goes to another worker after a worker refused them.
MAX_REFUSALS = 3
#: Largest log returned per student (nbgrader's log of one student is a few kB).
MAX_LOG_BYTES = 4 * 2**20
#: Stored columns of nbgrader's gradebook that autograding writes, copied from a worker's gradebook
#: to the client's (the scores and totals nbgrader shows are computed from these).
GRADE_FIELDS = ("auto_score", "manual_score", "extra_credit", "needs_manual_grade")
COMMENT_FIELDS = ("auto_comment", "manual_comment")
NOTEBOOK_FIELDS = ("flagged", "late_submission_penalty")


#: Variables that Dask's nannies set for their workers (``distributed.nanny.pre-spawn-environ`` and the
#: hash seed): a worker's grading processes get the client's values instead (or none, where the client has
#: none), so that the tests and the students' kernels run as they would on the client's pool.
GRADING_ENVIRONMENT = (
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MALLOC_TRIM_THRESHOLD_",
)


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
    environment: dict[str, str | None]
    code_digest: str
    source_files: dict[str, bytes] = field(repr=False)
    held_out_files: dict[str, bytes] = field(repr=False)
    deadline: str | None = None
    late_penalty: str = "flag"


def course_code_digest() -> str:
    """A digest of the course's installed code (the packages the grader and the hidden tests import)."""
    import hashlib

    import autograder
    import data_fetch
    import mlhep

    digest = hashlib.sha256()
    for package in (autograder, data_fetch, mlhep):
        root = Path(package.__path__[0])
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package.__name__}/{path.relative_to(root)}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


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
        environment={name: os.environ.get(name) for name in GRADING_ENVIRONMENT},
        code_digest=course_code_digest(),
        source_files=read_tree(SOLUTIONS_DIR / run.assignment),
        held_out_files=held_out_files,
        deadline=run.deadline,
        late_penalty=run.late_penalty,
    )


# --- The worker's side ------------------------------------------------------------------------


def worker_address() -> str:
    """This Dask worker's address, to name it in messages ("this process" outside a worker)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:
        return "this process"


def why_worker_cannot_grade(
    version: str | None = None, code_digest: str | None = None, sandboxed: bool = True
) -> str | None:
    """None if this worker can grade a run of the course at ``version`` (and with the code of digest
    ``code_digest``); else why not, in plain words."""
    if version is not None and course_version() != version:
        return (
            f"it has version {course_version()} of the course and the client {version}: "
            "install the same release on the workers"
        )
    if code_digest is not None and course_code_digest() != code_digest:
        return (
            f"its course code differs from the client's, at the same version {course_version()}: "
            "install the same commit on the workers"
        )
    if sandboxed:
        ok, why = sandbox.available()
        if not ok:
            return f"it cannot sandbox the students' kernels: {why}"
        # Where its copy of the course will be (the temporary folder itself may hold folders the sandbox
        # shows, such as a data cache in /tmp: only a course inside one of them would be visible).
        folder = Path(tempfile.gettempdir()) / COURSE_PREFIX
        if (visible := sandbox.visible_folder(folder)) is not None:
            return (
                f"its temporary folder {folder.parent}, where it keeps the hidden tests and held-out samples, "
                f"lies in {visible}, which students' kernels can read: set TMPDIR to a folder outside it"
            )
    return None


#: A worker's copy of a run's course: ``mlhep-grading-<run>-<random>/`` in its temporary folder, with
#: the worker process's id in OWNER_FILE, so that a later course can remove one whose worker was killed.
COURSE_PREFIX = "mlhep-grading-"
OWNER_FILE = "worker.pid"


def remove_abandoned_courses() -> None:
    """Remove the courses of workers of this machine that died without removing theirs (killed)."""
    import psutil

    from .run import remove_tree

    for folder in Path(tempfile.gettempdir()).glob(f"{COURSE_PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # being made, or not one of ours
        if owner != os.getpid() and not psutil.pid_exists(owner):
            remove_tree(folder)


class WorkerCourse:
    """A worker's copy of a run's private course, and its grading processes (one per thread)."""

    def __init__(self, bundle: CourseBundle):
        remove_abandoned_courses()
        self.folder = Path(tempfile.mkdtemp(prefix=f"{COURSE_PREFIX}{bundle.run_id[:8]}-"))
        try:
            (self.folder / OWNER_FILE).write_text(str(os.getpid()))
            self.run = self._make_course(bundle)
        except BaseException:
            from .run import remove_tree

            remove_tree(self.folder)
            raise
        self.idle: queue.SimpleQueue = queue.SimpleQueue()  # (slot, grading process or None)
        self.slots = 0
        self.closed = False
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
            environment=bundle.environment,
            deadline=bundle.deadline,
            late_penalty=bundle.late_penalty,
        )
        run.due = late.parse_deadline(bundle.deadline) if bundle.deadline else None
        (run.out_dir / "logs").mkdir(parents=True)
        make_course(
            run.course,
            bundle.assignment,
            bundle.cell_timeout,
            bundle.sandboxed,
            held_out,
            source,
            late_penalty=bundle.late_penalty,
        )
        run.max_score = generate_assignment(run.course, bundle.assignment, run.due)
        return run

    @contextlib.contextmanager
    def slot(self) -> Iterator[list]:
        """A grading slot of this worker: ``[slot number, grading process or None]``, given back after
        (its process stopped instead, if the course was closed meanwhile)."""
        try:
            held = list(self.idle.get_nowait())
        except queue.Empty:
            with self.lock:
                held = [self.slots, None]
                self.slots += 1
        try:
            yield held
        finally:
            with self.lock:
                closed = self.closed
                if not closed:
                    self.idle.put(tuple(held))
            if closed and held[1] is not None:
                from .run import stop_worker

                stop_worker(held[1])

    def close(self) -> None:
        """Stop the idle grading processes (a busy one stops when its student is done) and remove the course."""
        from .run import remove_tree, stop_worker

        with self.lock:
            self.closed = True
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
        self.name = f"{COURSE_PREFIX}{bundle.run_id}"

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
                raise WorkerRefused(worker_address(), "it has not received the run's course (its plugin)")
            if why := why_worker_cannot_grade(bundle.version, bundle.code_digest, bundle.sandboxed):
                raise WorkerRefused(worker_address(), why)
            try:
                _COURSES[run_id] = WorkerCourse(bundle)
            except Exception as error:  # a full disk, say: this worker cannot grade, the others may
                raise WorkerRefused(
                    worker_address(), f"it could not build the run's course: {type(error).__name__}: {error}"
                ) from None
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
    # The client counts a lost worker against a student only if their grading had started.
    with contextlib.suppress(ValueError):  # ValueError: called outside a Dask worker
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(f"{COURSE_PREFIX}{run_id}", {"key": worker.get_current_task(), "student": student})
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
        # Read as the pool's feedback step reads them: regular files only, never through a link, bounded.
        "autograded": {
            path.name: read_regular_file(autograded, path.name, MAX_NOTEBOOK_BYTES)
            for path in sorted(autograded.glob("*"))
        },
        "feedback": {
            path.name: read_regular_file(feedback, path.name, MAX_FEEDBACK_BYTES)
            for path in sorted(feedback.glob("*.html"))
        },
    }


# --- The client's side ------------------------------------------------------------------------


def record_student(run, student: str, result: dict) -> dict:
    """Write what a worker returned for ``student`` into the client's course; their row.

    A graded student is written whole or not at all: the graded notebooks and feedback pages first,
    then the gradebook (nbgrader's submission, then every grade and comment); if any of it fails,
    what was written is removed (nbgrader's ``remove_submission``) and the error is raised.
    """
    from .run import remove_tree

    row = result["row"]
    if row["student"] != student:
        raise ValueError(f"a worker sent the results of {row['student']!r} for {student!r}")
    write_text_atomic(run.out_dir / "logs" / f"{student}.log", result["log"])
    if row["status"] != "graded":
        return row
    folders = [run.course / kind / student for kind in ("autograded", "feedback")]
    try:
        for folder, files in zip(folders, (result["autograded"], result["feedback"]), strict=True):
            write_tree(folder / run.assignment, files)
        with gradebook(run.course) as gb:
            gb.update_or_create_student(student)
            try:
                with warnings.catch_warnings():
                    # nbgrader's add_submission warns about its own use of SQLAlchemy's session, whoever
                    # calls it (nbgrader autograde too, into its log); the rows are written all the same.
                    warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session")
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
    except BaseException:
        for folder in folders:
            remove_tree(folder)
        raise
    return row


def write_text_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, errors="replace")
    os.replace(partial, path)


def submission_files(run, student: str) -> dict[str, bytes]:
    """The files of ``student`` the client wrote into its course (the checked notebooks, the submission's
    time and exchange secret), to send."""
    folder = run.course / "submitted" / student / run.assignment
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


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
    answers = dask_client.run(why_worker_cannot_grade, bundle.version, bundle.code_digest, bundle.sandboxed)
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

    One student per worker thread at a time, more as results come back (so that the notebooks of a
    class never wait in the scheduler's memory all at once, and a lost worker holds no student that
    had not started). A student whose worker dies or is lost while grading them is submitted again
    (``REGRADES_AFTER_LOSS`` times), then failed with the reason; one whose worker refuses goes to
    another worker, and the refusing one is retired. The grader's own failures fail the student with a
    reason starting with ``GRADER_ERROR``, and so do the students left when the cluster has had no
    worker for ``WORKER_WAIT_SECONDS``. ``already``: students of the class whose row is already
    decided (no notebook to grade), for the progress bar.
    """
    from distributed import KilledWorker, wait

    from .run import GRADER_ERROR

    check_workers(dask_client, bundle)
    plugin = GradingRunPlugin(bundle)
    dask_client.register_plugin(plugin)
    topic = f"{COURSE_PREFIX}{bundle.run_id}"
    rows: dict[str, dict] = {}
    problems_of = dict(students_to_grade)
    waiting = [student for student, _ in students_to_grade]
    futures: dict = {}  # future -> student
    attempts: dict[str, int] = {}
    losses: dict[str, int] = {}
    refusals: dict[str, int] = {}
    refused: set[str] = set()  # workers

    def submit(student: str) -> None:
        attempts[student] = attempts.get(student, 0) + 1
        try:
            future = dask_client.submit(
                grade_student,
                bundle.run_id,
                student,
                submission_files(run, student),
                problems_of[student],
                key=f"grade-{bundle.run_id}-{student}-{attempts[student]}",
                pure=False,
                retries=0,
            )
        except Exception as error:  # noqa: BLE001 - this student fails, the batch goes on
            rows[student] = run.row(
                student, status="failed", reason=f"{GRADER_ERROR}: {type(error).__name__}: {error}"
            )
            return
        futures[future] = student

    def capacity() -> int:
        threads = dask_client.nthreads()
        return TASKS_PER_WORKER * sum(n for address, n in threads.items() if address not in refused)

    def started(future) -> bool:
        return any(event.get("key") == future.key for _, event in dask_client.get_events(topic))

    progress = tqdm(
        total=already + len(students_to_grade), initial=already, desc=f"grading {run.assignment}", unit="student"
    )
    no_worker_since = None
    try:
        while futures or waiting:
            while waiting and len(futures) < capacity():
                submit(waiting.pop(0))
            if not futures:
                no_worker_since = no_worker_since or time.monotonic()
                if time.monotonic() - no_worker_since > WORKER_WAIT_SECONDS:
                    for student in waiting:
                        rows[student] = run.row(
                            student,
                            status="failed",
                            reason=f"{GRADER_ERROR}: the Dask cluster had no worker that could grade for "
                            f"{WORKER_WAIT_SECONDS} s",
                        )
                    waiting.clear()
                time.sleep(1)
                continue
            no_worker_since = None
            try:
                done = wait(list(futures), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                continue  # students still grading; more workers may have joined meanwhile
            finished = [(future, futures.pop(future)) for future in done]
            while waiting and len(futures) < capacity():  # the freed threads get their next student first
                submit(waiting.pop(0))
            for future, student in finished:
                try:
                    rows[student] = record_student(run, student, future.result())
                except WorkerRefused as error:
                    refused.add(error.address)
                    with contextlib.suppress(Exception):
                        dask_client.retire_workers([error.address], close_workers=True)
                    refusals[student] = refusals.get(student, 0) + 1
                    if refusals[student] <= MAX_REFUSALS:
                        waiting.insert(0, student)
                        continue
                    rows[student] = run.row(student, status="failed", reason=f"{GRADER_ERROR}: {error}")
                except KilledWorker:
                    if not started(future):  # waited on a worker that was lost: never graded there
                        waiting.insert(0, student)
                        continue
                    losses[student] = losses.get(student, 0) + 1
                    if losses[student] <= REGRADES_AFTER_LOSS:
                        waiting.insert(0, student)
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
                progress.set_postfix_str(student)
                progress.update()
    finally:
        progress.close()
        with contextlib.suppress(Exception):
            dask_client.cancel(list(futures))
        with contextlib.suppress(Exception):  # each worker's teardown removes its course
            dask_client.unregister_worker_plugin(plugin.name)
        with contextlib.suppress(Exception):  # and the courses of killed workers on their machines
            dask_client.run(remove_abandoned_courses)
    return rows


def grade_on_dask(
    run, students_to_grade: list[tuple[str, list[str]]], held_out: dict | None, workers: int, already: int = 0
) -> dict[str, dict]:
    """Grade on the run's scheduler, or on a LocalCluster of ``workers`` processes; the rows by student."""
    from data_fetch import DataFetchError
    from data_fetch import cluster as dask_cluster

    bundle = make_bundle(run, held_out)
    # A worker that dies with a student is reported at once (KilledWorker) on a LocalCluster, so that this
    # module decides the one regrade; a named scheduler keeps its own allowed-failures.
    config = {"distributed.scheduler.allowed-failures": 0}
    try:
        with dask_cluster.client(workers, run.scheduler, config=config) as dask_client:
            return grade_class_on_dask(run, students_to_grade, bundle, dask_client, already)
    except DataFetchError as error:
        raise UsageError(str(error)) from None
