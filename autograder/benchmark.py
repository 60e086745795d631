"""How fast does a class grade? ``python -m autograder.benchmark --students 100``.

Grades the same class three times on this machine, in the same run:

1. plain nbgrader, the way a course without this grader would: one ``nbgrader autograde``
   command for the whole class, serial, test cells in the student's kernel, no sandbox;
2. ``python -m autograder grade --engine pool``: sandboxed kernels, test cells in the grader,
   feedback pages, ``--workers`` students at a time on this machine's pool of grading processes;
3. the same with ``--engine dask``: each student a task of a Dask LocalCluster of ``--workers``
   processes, results sent back as data and written by the client (what runs on a cluster).

and then the time to start a kernel (and import numpy) with and without the sandbox, which is
the sandbox's cost per submission. The class alternates
the reference solution and the untouched exercise, so half the notebooks run to the end and
half stop at their first ``NotImplementedError``. Prints a table and writes ``benchmark.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .batch.private_course import COURSE_ID
from .batch.run import default_workers, usable_cores
from .course import COURSE_CONFIG, EXERCISES_DIR, SOLUTIONS_DIR, check_assignment, run_nbgrader

PLAIN_CONFIG = """\
c = get_config()  # noqa: F821
load_subconfig({course_config!r})  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.course_id = {course_id!r}
c.Execute.timeout = {cell_timeout}
"""


def make_class(submissions: Path, assignment: str, n_students: int) -> None:
    """``n_students`` folders: even ones hand in the reference solution, odd ones the untouched exercise."""
    for index in range(n_students):
        source = SOLUTIONS_DIR if index % 2 == 0 else EXERCISES_DIR
        shutil.copytree(
            source / assignment,
            submissions / f"student{index:03d}",
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
        )


def plain_nbgrader(submissions: Path, assignment: str, root: Path, cell_timeout: float) -> tuple[float, dict]:
    """Seconds for plain, serial ``nbgrader autograde`` of the whole class, and its scores."""
    from nbgrader.api import Gradebook

    shutil.copytree(SOLUTIONS_DIR / assignment, root / "source" / assignment)
    (root / "nbgrader_config.py").write_text(
        PLAIN_CONFIG.format(
            course_config=str(COURSE_CONFIG), root=str(root), course_id=COURSE_ID, cell_timeout=round(cell_timeout)
        )
    )
    result = run_nbgrader(["generate_assignment", assignment, "--force"], cwd=root)
    if result.returncode != 0:
        sys.exit(f"nbgrader generate_assignment failed:\n{result.output}")
    for student in submissions.iterdir():
        shutil.copytree(student, root / "submitted" / student.name / assignment)
    start = time.perf_counter()
    result = run_nbgrader(
        ["autograde", assignment, "--create", "--force"], cwd=root, log_path=root / "autograde.log"
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"plain nbgrader autograde failed (see {root / 'autograde.log'})")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        scores = {s.student.id: s.score for s in gb.find_assignment(assignment).submissions}
    return seconds, scores


def timed_grade(
    submissions: Path, assignment: str, out_dir: Path, workers: int, cell_timeout: float, engine: str = "pool"
) -> tuple[float, dict]:
    """Seconds for ``python -m autograder grade`` on the class (a new process, as a grader runs it)."""
    start = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        assignment,
        str(submissions),
        "--out",
        str(out_dir),
        "--workers",
        str(workers),
        "--cell-timeout",
        str(cell_timeout),
        "--engine",
        engine,
    ]
    # This machine's LocalCluster for --engine dask, not a scheduler named for data production.
    env = {name: value for name, value in os.environ.items() if name != "MLHEP_DASK_SCHEDULER"}
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"python -m autograder grade failed:\n{result.stderr[-3000:]}")
    with open(out_dir / "grades.csv", newline="") as file:
        return seconds, {row["student"]: float(row["score"]) for row in csv.DictReader(file)}


def kernel_start_seconds(sandboxed: bool, repeats: int) -> float:
    """Mean seconds to start a kernel (in the sandbox, or plain), run ``import numpy`` and stop it."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec

    from . import sandbox

    seconds = []
    with tempfile.TemporaryDirectory(prefix="mlhep-kernel-") as runtime:
        spec_dir = sandbox.write_kernelspec(Path(runtime) / "kernels")
        for _ in range(repeats):
            start = time.perf_counter()
            if sandboxed:  # the connection file apart from the sockets' folder, as the grader makes them
                os.makedirs(f"{runtime}/sockets", exist_ok=True)
                manager = KernelManager(
                    transport="ipc", ip=f"{runtime}/sockets/kernel", connection_file=f"{runtime}/kernel.json"
                )
                manager._kernel_spec = KernelSpec.from_resource_dir(str(spec_dir))
                box = sandbox.KernelBox("benchmark")
            else:
                manager, box = KernelManager(kernel_name=sandbox.KERNEL_NAME), contextlib.nullcontext()
            with box:
                manager.start_kernel(cwd=runtime, env={**os.environ, **(box.environment() if sandboxed else {})})
                client = manager.client()
                client.start_channels()
                client.wait_for_ready(timeout=120)
                client.execute_interactive("import numpy", timeout=120)
                client.stop_channels()
                manager.shutdown_kernel()
            seconds.append(time.perf_counter() - start)
    return sum(seconds) / len(seconds)


def run(
    assignment: str, n_students: int, workers: int, kernel_starts: int, cell_timeout: float, work_dir: Path
) -> dict:
    check_assignment(assignment)
    submissions = work_dir / "submissions"
    make_class(submissions, assignment, n_students)

    plain_s, plain_scores = plain_nbgrader(submissions, assignment, work_dir / "plain", cell_timeout)
    ours_s, our_scores = timed_grade(
        submissions, assignment, work_dir / "ours", workers=workers, cell_timeout=cell_timeout
    )
    dask_s, dask_scores = timed_grade(
        submissions, assignment, work_dir / "dask", workers=workers, cell_timeout=cell_timeout, engine="dask"
    )
    sandboxed_s = kernel_start_seconds(True, kernel_starts)
    plain_kernel_s = kernel_start_seconds(False, kernel_starts)
    return {
        "assignment": assignment,
        "students": n_students,
        "workers": workers,
        "cores": usable_cores(),
        "plain_nbgrader_serial_s": round(plain_s, 1),
        "ours_s": round(ours_s, 1),
        "speedup": round(plain_s / ours_s, 2),
        "dask_s": round(dask_s, 1),
        "dask_speedup": round(plain_s / dask_s, 2),
        "dask_over_pool": round(ours_s / dask_s, 2),
        "plain_s_per_student": round(plain_s / n_students, 2),
        "ours_s_per_student": round(ours_s / n_students, 2),
        "kernel_start_sandboxed_s": round(sandboxed_s, 2),
        "kernel_start_plain_s": round(plain_kernel_s, 2),
        "sandbox_overhead_s_per_student": round(sandboxed_s - plain_kernel_s, 2),
        "same_scores": plain_scores == our_scores == dask_scores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--assignment", default="00_getting_started")
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument(
        "--kernel-starts",
        type=int,
        default=20,
        help="kernels started with and without the sandbox to time it (default: 20)",
    )
    parser.add_argument("--cell-timeout", type=float, default=300)
    parser.add_argument("--out", type=Path, help="write benchmark.json here (default: the current folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlhep-benchmark-") as work_dir:
        figures = run(
            args.assignment, args.students, args.workers, args.kernel_starts, args.cell_timeout, Path(work_dir)
        )
    for name, value in figures.items():
        print(f"{name:38s} {value}")
    out = (args.out or Path.cwd()) / "benchmark.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"written to {out}")
    return 0 if figures["same_scores"] else 1


if __name__ == "__main__":
    sys.exit(main())
