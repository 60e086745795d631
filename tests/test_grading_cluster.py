"""Grading on Dask (autograder.batch.cluster): the same grades as the local pool, one gradebook.

Lesson 00's class with its hostile submissions is graded three times: on the local pool, on a
LocalCluster of one worker and on one of two. Rows, gradebook and feedback must be the same.
Then a worker that cannot sandbox refuses with its address, and a worker lost mid-student has that
student graded again once, then failed. About four minutes on two cores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import dask
import psutil
import pytest
from conftest import TEST_HELD_OUT_SEED
from distributed import Client, LocalCluster
from nbgrader.api import Gradebook
from test_grading import add_hostile_students, add_student, broken_copy, make_class, nbgrader_cells

import data_fetch
from autograder import UsageError
from autograder.batch import cluster
from autograder.batch.held_out import prepare_held_out
from autograder.batch.private_course import COURSE_ID
from autograder.batch.run import GradingRun, grade
from autograder.course import SOLUTIONS_DIR

pytestmark = pytest.mark.grading

LESSON = "00_getting_started"
CELL_TIMEOUT = 20  # the endless loop runs into it; lesson 00's cells need a few seconds
NOTEBOOK_TIMEOUT = 240
ENGINES = {"pool": {"engine": "pool", "workers": 2}, "dask-1": {"engine": "dask", "workers": 1}}
ENGINES["dask-2"] = {"engine": "dask", "workers": 2}
# Where the gradebooks of these runs are: a Dask worker's course, and the output folders of pytest.
SNOOP = """import glob
found = glob.glob("/tmp/mlhep-grading-*/out/nbgrader/gradebook.db")
found += glob.glob("/tmp/pytest-of-*/*/*/out/nbgrader/gradebook.db")
assert not found, f"A GRADEBOOK IS IN SIGHT: {found}"
"""
ROW_FIELDS = (
    "score",
    "max_score",
    "to_grade_by_hand",
    "late_penalty",
    "submitted_at",
    "late_by",
    "status",
    "reason",
)
# The class's deadline, and a copy of the reference handed in 1 day and 10 hours after it (nbgrader's
# collect keeps the time in timestamp.txt): two started days of 25%.
DEADLINE = "2026-01-01T00:00Z"
LATE_TIME = "2026-01-02 10:00:00.000000 UTC"
LATE_OPTIONS = {"deadline": DEADLINE, "late_penalty": "25%/day"}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Engine -> (rows by student, output folder), for the same class."""
    submissions = tmp_path_factory.mktemp("class") / "submissions"
    make_class(submissions, LESSON)
    add_hostile_students(submissions, LESSON)
    # A student who looks for a gradebook: in the sandbox there is none to see, on any engine.
    (solution,) = sorted((SOLUTIONS_DIR / LESSON).glob("*.ipynb"))
    last = [meta["grade_id"] for _, meta in nbgrader_cells(solution) if meta.get("solution")][-1]
    add_student(submissions, "snoop", broken_copy(solution, last, SNOOP), solution.name)
    add_student(submissions, "late_reference", solution.read_text(), solution.name)
    (submissions / "late_reference" / "timestamp.txt").write_text(LATE_TIME)
    roster = submissions.parent / "roster.txt"
    roster.write_text("\n".join(sorted(folder.name for folder in submissions.iterdir()) + ["absent"]) + "\n")
    results = {}
    for name, options in ENGINES.items():
        out_dir = tmp_path_factory.mktemp(name) / "out"
        start = time.perf_counter()
        rows = grade(
            LESSON,
            submissions,
            out_dir,
            cell_timeout=CELL_TIMEOUT,
            notebook_timeout=NOTEBOOK_TIMEOUT,
            roster=roster,
            **LATE_OPTIONS,
            **options,
        )
        print(f"\n{name}: {time.perf_counter() - start:.1f} s")
        results[name] = ({row["student"]: row for row in rows}, out_dir)
    return results


def gradebook_contents(out_dir: Path) -> dict:
    """Student -> every stored grade, comment and notebook field nbgrader's autograde writes."""
    contents = {}
    with Gradebook(f"sqlite:///{out_dir / 'nbgrader' / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        for submission in gb.find_assignment(LESSON).submissions:
            contents[submission.student.id] = {
                notebook.name: (
                    {name: getattr(notebook, name) for name in cluster.NOTEBOOK_FIELDS},
                    {
                        grade.name: {f: getattr(grade, f) for f in cluster.GRADE_FIELDS}
                        for grade in notebook.grades
                    },
                    {c.name: {f: getattr(c, f) for f in cluster.COMMENT_FIELDS} for c in notebook.comments},
                    notebook.score,
                )
                for notebook in submission.notebooks
            }
    return contents


@pytest.mark.parametrize("engine", [name for name in ENGINES if name != "pool"])
def test_same_rows_as_the_pool(graded, engine):
    pool_rows, _ = graded["pool"]
    rows, _ = graded[engine]
    assert sorted(rows) == sorted(pool_rows)
    for student, row in rows.items():
        assert {f: row[f] for f in ROW_FIELDS} == {f: pool_rows[student][f] for f in ROW_FIELDS}, student
    # the class is what it should be: not everything failed the same way
    assert rows["reference"]["status"] == "graded" and rows["reference"]["score"] == rows["reference"]["max_score"]
    assert (
        rows["exception"]["status"] == "graded" and 0 < rows["exception"]["score"] < rows["exception"]["max_score"]
    )
    assert rows["invalid_json"]["status"] == "failed"
    assert rows["snoop"]["status"] == "graded" and rows["snoop"]["score"] == rows["snoop"]["max_score"]
    late = rows["late_reference"]
    assert late["late_by"] == "1 d 10 h" and late["submitted_at"] == "2026-01-02T10:00:00Z", late
    assert late["late_penalty"] == 0.5 * late["max_score"] and late["score"] == 0.5 * late["max_score"], late
    assert rows["absent"]["status"] == "missing" and rows["absent"]["reason"] == "no submission"


@pytest.mark.parametrize("engine", [name for name in ENGINES if name != "pool"])
def test_one_gradebook_with_the_pools_grades(graded, engine):
    rows, out_dir = graded[engine]
    contents = gradebook_contents(out_dir)
    graded_students = {student for student, row in rows.items() if row["status"] == "graded"}
    # only the client wrote the gradebook, and only whole students: the graded ones
    assert set(contents) == graded_students
    pool_contents = gradebook_contents(graded["pool"][1])
    for student in graded_students:
        assert contents[student] == pool_contents[student], student


@pytest.mark.parametrize("engine", [name for name in ENGINES if name != "pool"])
def test_feedback_and_logs_come_back(graded, engine):
    rows, out_dir = graded[engine]
    pool_out = graded["pool"][1]
    for student, row in rows.items():
        pages = sorted((out_dir / "feedback" / student).glob("*.html")) if (out_dir / "feedback").exists() else []
        if row["status"] == "graded":
            assert [page.name for page in pages] == ["00_getting_started.ipynb".replace(".ipynb", ".html")]
            pool_page = pool_out / "feedback" / student / pages[0].name
            # the same page but for the time nbgrader renders it
            assert abs(len(pages[0].read_bytes()) - len(pool_page.read_bytes())) < 200, student
            autograded = out_dir / "nbgrader" / "autograded" / student / LESSON
            assert sorted(p.name for p in autograded.glob("*.ipynb")) == ["00_getting_started.ipynb"]
        else:
            assert not pages, student
        if row["status"] == "graded" or "timeout" in row["reason"]:
            assert (out_dir / "logs" / f"{student}.log").read_text().strip(), student


# --- Workers that cannot grade, and workers that are lost -------------------------------------


@contextlib.contextmanager
def scheduler(workers: int = 1, **worker_options):
    """A LocalCluster that a run names as its scheduler, as a TA names a cluster's."""
    with (
        dask.config.set(
            {"distributed.scheduler.allowed-failures": 0, "distributed.worker.profile.enabled": False}
        ),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},
            silence_logs=logging.ERROR,
            **worker_options,
        ) as local_cluster,
    ):
        yield local_cluster


def test_a_worker_without_bubblewrap_refuses(tmp_path):
    submissions = tmp_path / "submissions"
    make_class(submissions, LESSON)
    # A worker whose PATH has no bwrap, as on a node where bubblewrap is not installed.
    with scheduler(env={"PATH": str(tmp_path / "no-tools")}) as local_cluster:
        address = local_cluster.scheduler_address
        (worker_address,) = local_cluster.scheduler_info["workers"]
        with pytest.raises(UsageError, match=r"1 of 1 Dask workers cannot grade \(worker tcp://") as error:
            grade(LESSON, submissions, tmp_path / "out", scheduler=address)
    assert "bubblewrap" in str(error.value) and worker_address in str(error.value)
    assert not (tmp_path / "out" / "grades.csv").exists()


def slow_class(submissions: Path, seconds: int) -> None:
    """One student whose notebook first sleeps ``seconds``: time to lose the worker grading it."""
    (solution,) = sorted(SOLUTIONS_DIR.glob(f"{LESSON}/*.ipynb"))
    first = next(meta["grade_id"] for _, meta in nbgrader_cells(solution) if meta.get("solution"))
    add_student(
        submissions, "slow", broken_copy(solution, first, f"import time\ntime.sleep({seconds})\n"), solution.name
    )


def worker_courses() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"{cluster.COURSE_PREFIX}*"))


def grading_processes() -> list[str]:
    """Grading processes (autograder.batch.worker) of a Dask worker's course that are still running."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "autograder.batch.worker" in cmdline and cluster.COURSE_PREFIX in cmdline:
            found.append(f"{process.pid}: {cmdline[:150]}")
    return found


def kill_workers_grading(address: str, times: int, stop: threading.Event, killed: list) -> None:
    """Kill the worker process that grades a student (SIGKILL, as a node taken back or the kernel's
    out-of-memory killer would), ``times`` times; the addresses killed go to ``killed``."""
    with Client(address) as watcher:
        while len(killed) < times and not stop.is_set():
            busy = [worker for worker, tasks in watcher.processing().items() if tasks]
            if not busy:
                time.sleep(0.2)
                continue
            time.sleep(3)  # the student is in the middle of its notebook
            for worker, pid in watcher.run(os.getpid, workers=busy).items():
                os.kill(pid, signal.SIGKILL)
                killed.append(worker)
            while not stop.is_set() and set(busy) & set(watcher.scheduler_info()["workers"]):
                time.sleep(0.2)  # until the scheduler has noticed


@pytest.mark.parametrize(("losses", "status"), [(1, "graded"), (2, "failed")])
def test_a_student_whose_worker_is_lost_is_graded_again_once(tmp_path, losses, status):
    submissions = tmp_path / "submissions"
    slow_class(submissions, seconds=12)
    courses_before = set(worker_courses())
    with scheduler(workers=2) as local_cluster:
        stop, killed = threading.Event(), []
        killer = threading.Thread(
            target=kill_workers_grading, args=(local_cluster.scheduler_address, losses, stop, killed)
        )
        killer.start()
        try:
            (row,) = grade(
                LESSON,
                submissions,
                tmp_path / "out",
                scheduler=local_cluster.scheduler_address,
                notebook_timeout=120,
            )
        finally:
            stop.set()
            killer.join()
    assert len(killed) == losses, killed
    assert row["status"] == status, row
    # Nothing of the killed workers stays: their grading processes died with them, and the next course
    # built on this machine removed their copies of the course.
    deadline = time.monotonic() + 10
    while (orphans := grading_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not orphans, orphans
    assert not set(worker_courses()) - courses_before, "a worker's course was left"
    if status == "graded":
        assert row["score"] == row["max_score"], row
    else:
        assert "died or was lost 2 times" in row["reason"], row
        with Gradebook(f"sqlite:///{tmp_path / 'out' / 'nbgrader' / 'gradebook.db'}", course_id=COURSE_ID) as gb:
            assert gb.find_assignment(LESSON).submissions == []  # never half a student


def test_files_from_a_worker_stay_in_their_folder(tmp_path):
    with pytest.raises(ValueError, match="not a path inside"):
        cluster.write_tree(tmp_path / "course", {"../outside.txt": b"x"})
    assert not (tmp_path / "outside.txt").exists()


def test_a_workers_course_reads_the_clients_held_out_samples(tmp_path, monkeypatch):
    """The held-out samples travel in the bundle: a worker's hidden tests find them in its own copy of
    the course, with the run's secret seed, and never produce events themselves."""
    assignment = "01_autoencoder_anomaly_detection"
    held_out = prepare_held_out(assignment, tmp_path, TEST_HELD_OUT_SEED)
    assert held_out["files"], held_out
    run = GradingRun(assignment, tmp_path, tmp_path / "out")
    run.check()
    bundle = cluster.make_bundle(run, held_out)
    course = cluster.WorkerCourse(bundle)
    try:
        config = (course.run.course / "nbgrader_config.py").read_text()
        cache = course.folder / "held-out"
        assert f"held_out_seed = {TEST_HELD_OUT_SEED!r}" in config and f"held_out_cache = {str(cache)!r}" in config

        def no_production(*args, **kwargs):
            raise AssertionError("the worker produced held-out events instead of reading the client's")

        monkeypatch.setattr("data_fetch.pythia_source.produce", no_production)
        for name, n_events in held_out["samples"]:
            sample = data_fetch.load(
                name, n_events=n_events, seed=TEST_HELD_OUT_SEED, source="pythia", cache_dir=cache
            )
            assert len(sample) == n_events
    finally:
        course.close()
    assert not course.folder.exists()


def test_a_worker_refuses_where_the_sandbox_shows_its_temporary_folder(tmp_path, monkeypatch):
    """Its copy of the course (hidden tests, held-out samples) must be out of the kernels' sight; a data
    cache that merely lies in the same temporary folder (as in CI: /tmp/.../data) is no reason."""
    data = tmp_path / "data"
    (data / "tmp").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("MLHEP_DATA_DIR", str(data))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert cluster.why_worker_cannot_grade() is None
    monkeypatch.setattr(tempfile, "tempdir", str(data / "tmp"))
    why = cluster.why_worker_cannot_grade()
    assert why is not None and "set TMPDIR to a folder outside it" in why and str(data) in why
