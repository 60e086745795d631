"""A class of hostile submissions of lesson 00 (tests/hostile.py), graded sandboxed, on each engine.

* the honest students get what they earned: the reference full marks, the untouched exercise and
  the empty attempt 0;
* no hostile kind gets more than its maximum, nor more than the empty attempt it was built on;
  each gets its status and, where the wording is fixed, its reason; none prints the evidence of
  an attack that got through;
* the batch completes; the repository, the gradebook's definition of the assignment and the
  machine (no files left outside the submissions, no connection to the host, no process left
  running) are as before.

The class is graded twice by the fixture ``graded``, on the local pool and on Dask: about five minutes
each on two cores. Notebooks read
their data through ``data_fetch``; set MLHEP_DATA_DIR to a folder holding the cached test-scale data.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import graded_outputs
from hostile import ASSIGNMENT, FULL_MARKS, HONEST_SCORES, KINDS, Traps, write_class
from nbgrader.api import Gradebook

from autograder.batch.private_course import COURSE_ID, generate_assignment, make_course
from autograder.batch.run import grade
from autograder.course import REPO_ROOT

pytestmark = pytest.mark.grading

CELL_TIMEOUT = 20  # short, so that the endless loops cost little; lesson 00's cells need a few s
NOTEBOOK_TIMEOUT = 240
SETTLE_SECONDS = 10  # how long a sandbox may take to go away after its student is graded


# ------------------------------------------------------------------------------ helpers


def repo_state() -> dict[str, str]:
    """Path -> sha256 of every tracked and every untracked, not ignored file, and the root's entries."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    state = {}
    for name in sorted(set(filter(None, listing.decode().split("\0")))):
        path = REPO_ROOT / name
        state[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    state["(root entries)"] = " ".join(sorted(p.name for p in REPO_ROOT.iterdir()))
    return state


def assignment_definition(gradebook_path: Path) -> dict:
    """The assignment as a gradebook records it, without nbgrader's random ids and without grades."""
    with Gradebook(f"sqlite:///{gradebook_path}", course_id=COURSE_ID) as gradebook:
        assignment = gradebook.find_assignment(ASSIGNMENT)
        notebooks = {
            notebook.name: {
                "kernelspec": notebook.kernelspec,
                "grade_cells": sorted([c.name, c.max_score, c.cell_type] for c in notebook.grade_cells),
                "task_cells": sorted([c.name, c.max_score, c.cell_type] for c in notebook.task_cells),
                "solution_cells": sorted(c.name for c in notebook.solution_cells),
                "source_cells": sorted(
                    [c.name, c.cell_type, c.locked, c.source, c.checksum] for c in notebook.source_cells
                ),
            }
            for notebook in assignment.notebooks
        }
        return {
            "assignments": sorted(a.name for a in gradebook.assignments),
            "duedate": str(assignment.duedate),
            "notebooks": notebooks,
        }


def digest(definition: dict) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as file:
        return {row["student"]: row for row in csv.DictReader(file)}


def lingering_processes(traps: Traps, base: Path, children_before: set[int]) -> list[psutil.Process]:
    """Processes a grading run left: the submissions' ``sleep TOKEN``, and any child of this
    process or any process working in ``base`` that was not there before."""
    found = {process.pid: process for process in traps.processes()}
    for process in psutil.Process().children(recursive=True):
        if process.pid not in children_before and not is_resource_tracker(process):
            found[process.pid] = process
    for process in psutil.process_iter(["cwd"]):
        if process.info["cwd"] and Path(process.info["cwd"]).is_relative_to(base):
            found[process.pid] = process
    return [
        process for process in found.values() if process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    ]


def is_resource_tracker(process: psutil.Process) -> bool:
    """multiprocessing's resource tracker, which the first LocalCluster of this process starts and which
    lives as long as this process does."""
    with contextlib.suppress(psutil.Error):
        return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
    return False


def describe(processes: list[psutil.Process]) -> list[str]:
    descriptions = []
    for process in processes:
        try:
            descriptions.append(f"{process.pid}: {' '.join(process.cmdline())[:150]}")
        except psutil.Error:
            descriptions.append(f"{process.pid}: (gone)")
    return descriptions


def remove(processes: list[psutil.Process], files: list[Path]) -> None:
    """Whatever got through is not left on the machine: kill ``processes``, delete ``files``."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    for path in files:
        if path.is_file() or path.is_symlink():
            path.unlink()


# ------------------------------------------------------------------------------ tests: honest students


@pytest.mark.parametrize("student", HONEST_SCORES)
def test_honest_student_gets_what_they_earned(graded, student):
    row = graded.rows[student]
    assert row["status"] == "graded" and row["score"] == HONEST_SCORES[student], row


def test_reference_has_no_remarks(graded):
    assert graded.rows["reference"]["reason"] == "", graded.rows["reference"]


# ------------------------------------------------------------------------------ tests: each kind


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_kind_gets_no_more_than_its_work(graded, kind):
    row = graded.rows[kind.name]
    assert row["score"] <= kind.max_score, row
    if kind.partial_credit is None:  # a hostile notebook: the empty attempt plus an attack
        assert row["score"] <= graded.rows["empty_attempt"]["score"], row


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_kind_status_and_reason(graded, kind):
    row = graded.rows[kind.name]
    assert row["status"] in ("graded", "failed"), row
    if kind.status is not None:
        assert row["status"] == kind.status, row
    if kind.reason is not None:
        assert re.search(kind.reason, row["reason"]), row


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.evidence], ids=lambda kind: kind.name)
def test_attack_did_not_get_through(graded, kind):
    found = re.findall(f".*(?:{kind.evidence}).*", graded_outputs(graded.out_dir, kind.name))
    assert not found, f"{kind.name}: {found[:3]}"


def test_graded_outputs_can_be_read(graded):
    # The check above can see outputs at all: the reference's test cells print.
    assert "visible tests passed" in graded_outputs(graded.out_dir, "reference")


# ------------------------------------------------------------------------------ tests: the batch


def test_batch_completed_with_a_row_per_student(graded):
    assert set(graded.rows) == set(graded.csv_rows) == graded.students
    for student, row in graded.rows.items():
        csv_row = graded.csv_rows[student]
        assert (float(csv_row["score"]), csv_row["status"], csv_row["reason"]) == (
            row["score"],
            row["status"],
            row["reason"],
        ), student


def test_every_row_has_the_assignments_max_score(graded):
    wrong = {student: row["max_score"] for student, row in graded.rows.items() if row["max_score"] != FULL_MARKS}
    assert not wrong, wrong


def test_repository_unchanged(graded):
    changed = sorted(
        name
        for name in graded.repo_before.keys() | graded.repo_after.keys()
        if graded.repo_before.get(name) != graded.repo_after.get(name)
    )
    assert not changed, f"changed while grading: {changed}"


def test_gradebook_defines_the_assignment_as_a_fresh_course(graded):
    fresh, after = graded.fresh_definition, graded.definition
    assert fresh["notebooks"], "the fresh course has no notebooks: the comparison would be empty"
    differ = sorted(key for key in fresh.keys() | after.keys() if fresh.get(key) != after.get(key))
    assert digest(after) == digest(fresh), f"the gradebook's definition differs in: {differ}"


def test_gradebook_scores_agree_with_the_csv(graded):
    with Gradebook(f"sqlite:///{graded.out_dir / 'nbgrader' / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        for student, row in graded.rows.items():
            if row["status"] != "graded":
                continue
            submission = gradebook.find_submission(ASSIGNMENT, student)
            assert submission.score == row["score"], student
            for notebook in submission.notebooks:
                for cell_grade in notebook.grades:
                    assert cell_grade.score <= cell_grade.max_score, (student, cell_grade.name, cell_grade.score)


def entries_under(folder: Path) -> list[Path]:
    """Every file, link and folder under ``folder``, without following links."""
    found = []
    for root, folders, files in os.walk(folder):
        found += [Path(root, name) for name in folders + files]
    return found


def test_the_file_outside_that_links_point_to_is_untouched_and_never_copied(graded):
    assert graded.canary_after == graded.canary_text
    assert graded.canary_mode == 0o644, oct(graded.canary_mode)  # no chmod went through a link
    copies = [
        path
        for path in entries_under(graded.out_dir)
        if path.is_file() and not path.is_symlink() and graded.canary_text.strip().encode() in path.read_bytes()
    ]
    assert not copies, copies


def test_the_output_folder_holds_no_link_and_no_special_file(graded):
    entries = entries_under(graded.out_dir)
    odd = [path for path in entries if path.is_symlink() or not (path.is_file() or path.is_dir())]
    assert entries and not odd, odd


def test_feedback_folders_hold_only_the_feedback_page(graded):
    page = ASSIGNMENT + ".html"
    folders = sorted((graded.out_dir / "feedback").iterdir())
    assert len(folders) >= len(HONEST_SCORES), folders  # the check looks at something
    for folder in folders:
        entries = sorted(entry.name for entry in folder.iterdir())
        assert entries == [page] and (folder / page).is_file() and not (folder / page).is_symlink(), (
            folder.name,
            entries,
        )


def feedback_text(out_dir: Path, student: str) -> str:
    return (out_dir / "feedback" / student / f"{ASSIGNMENT}.html").read_text(errors="replace")


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.leak], ids=lambda kind: kind.name)
def test_feedback_never_shows_what_the_hidden_tests_gave_student_code(graded, kind):
    # The grader's copy shows it (so the pattern matches what the student's code said) ...
    assert re.search(kind.leak, graded_outputs(graded.out_dir, kind.name)), kind.name
    # ... and the student's feedback does not.
    found = re.findall(f".*(?:{kind.leak}).*", feedback_text(graded.out_dir, kind.name))
    assert not found, found[:3]


def kernel_folders() -> list[str]:
    """The kernels' connection and socket folders that exist now (sandbox.runtime_parent), and the
    Dask workers' copies of a run's course (autograder.batch.cluster)."""
    from autograder.sandbox import runtime_parent

    parent = Path(runtime_parent() or tempfile.gettempdir())
    folders = list(parent.glob("mlhep-kernel-*")) + list(Path(tempfile.gettempdir()).glob("mlhep-grading-*"))
    return [str(path) for path in folders]


def test_every_kernels_folder_was_removed(graded):
    # traps_for_the_cleanup leaves a read-only folder and 3000 nested ones in its socket folder.
    assert not graded.kernel_folders_left, graded.kernel_folders_left


def test_no_files_left_outside_the_submissions(graded):
    assert not graded.traces, [str(path) for path in graded.traces]


def test_no_connection_reached_the_host(graded):
    assert graded.connections == 0


def test_no_process_left_running(graded):
    assert not graded.lingering, graded.lingering


def accepted_connections(server: socket.socket) -> int:
    """How many connections reached the listening socket ``server``."""
    server.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


# ------------------------------------------------------------------------------ the class


@dataclass
class Graded:
    """One grading run of the hostile class and what it left behind."""

    rows: dict[str, dict]
    csv_rows: dict[str, dict]
    students: set[str]
    out_dir: Path
    seconds: float
    repo_before: dict[str, str]
    repo_after: dict[str, str]
    definition: dict
    fresh_definition: dict
    traces: list[Path]
    lingering: list[str]
    connections: int
    canary_file: Path
    canary_text: str
    canary_after: str
    canary_mode: int
    kernel_folders_left: list[str]


# The same class on this machine's pool and as tasks of a Dask LocalCluster (autograder.batch.cluster):
# every guarantee holds on both.
@pytest.fixture(scope="module", params=["pool", "dask"])
def graded(tmp_path_factory, request):
    base = tmp_path_factory.mktemp(f"hostile-{request.param}")
    submissions, out_dir = base / "submissions", base / "out"
    canary = socket.create_server(("127.0.0.1", 0))  # the network submission aims at this port
    traps = write_class(submissions, canary_port=canary.getsockname()[1])
    fresh = make_course(base / "fresh" / "nbgrader", ASSIGNMENT, CELL_TIMEOUT)
    generate_assignment(fresh, ASSIGNMENT)

    traps.canary_file.chmod(0o644)
    kernel_folders_before = set(kernel_folders())
    children_before = {process.pid for process in psutil.Process().children(recursive=True)}
    repo_before = repo_state()
    start = time.monotonic()
    try:
        rows = grade(
            ASSIGNMENT,
            submissions,
            out_dir,
            cell_timeout=CELL_TIMEOUT,
            notebook_timeout=NOTEBOOK_TIMEOUT,
            engine=request.param,
        )
    except BaseException:
        remove(lingering_processes(traps, base, children_before), traps.traces(out_dir))
        raise
    seconds = time.monotonic() - start
    repo_after = repo_state()

    deadline = time.monotonic() + SETTLE_SECONDS
    while (lingering := lingering_processes(traps, base, children_before)) and time.monotonic() < deadline:
        time.sleep(0.5)
    traces = traps.traces(out_dir)
    print(f"\ngraded {len(rows)} students in {seconds:.0f} s")
    for row in rows:
        print(f"  {row['student']:34} {row['score']:4g} {row['status']:7} {row['reason']}")
    yield Graded(
        rows={row["student"]: row for row in rows},
        csv_rows=read_csv(out_dir / "grades.csv"),
        students={folder.name for folder in submissions.iterdir()},
        out_dir=out_dir,
        seconds=seconds,
        repo_before=repo_before,
        repo_after=repo_after,
        definition=assignment_definition(out_dir / "nbgrader" / "gradebook.db"),
        fresh_definition=assignment_definition(fresh / "gradebook.db"),
        traces=traces,
        lingering=describe(lingering),
        connections=accepted_connections(canary),
        canary_file=traps.canary_file,
        canary_text=traps.canary_text,
        canary_after=traps.canary_file.read_text(),
        canary_mode=traps.canary_file.stat().st_mode & 0o777,
        kernel_folders_left=sorted(set(kernel_folders()) - kernel_folders_before),
    )

    canary.close()
    remove(lingering, traces)
    traps.canary_file.unlink()
