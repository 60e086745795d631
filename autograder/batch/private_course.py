"""The private nbgrader course of a grading run, in ``OUT/nbgrader/``: its configuration (which sets
the grader's own steps in nbgrader's place), a copy of the assignment's source, its gradebook."""

from __future__ import annotations

import contextlib
import datetime
import shutil
import sqlite3
from pathlib import Path

from nbgrader.api import Gradebook

from .. import sandbox
from ..course import COURSE_CONFIG, SOLUTIONS_DIR, AutograderError, nbgrader_api
from . import late

COURSE_ID = "mlhep"  # as in the repository's nbgrader_config.py
GRADEBOOK_LOCK_TIMEOUT = 120  # seconds a worker waits for another's write to the gradebook

# The private course's configuration. It loads the repository's configuration first, so that
# the code stub (part of the checksums nbgrader records) and everything else are the course's.
CONFIG_TEMPLATE = '''\
"""nbgrader configuration of a private grading course, written by autograder.batch."""

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
# (autograder.testcells); the rest of nbgrader's autograde steps are its defaults.
c.Autograde.autograde_preprocessors = [
    "autograder.testcells.execute.TrustedExecute",
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
c.GenerateFeedback.exporter_class = "autograder.batch.feedback.FeedbackExporter"
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "autograder.batch.feedback.HideHiddenTests",
    "autograder.pages.SanitizeStudentContent",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# Every page rendered from a student's notebook (feedback, formgrader) shows nothing active.
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.filters = {{"clean_html": "autograder.pages.clean_html"}}
c.HTMLExporter.preprocessors = ["autograder.pages.SanitizeStudentContent"]
'''


def make_course(
    root: Path,
    assignment: str,
    cell_timeout: float,
    sandboxed: bool = True,
    held_out: dict | None = None,
    source: Path | None = None,
    late_penalty: str = "flag",
) -> Path:
    """Create the private nbgrader course at ``root`` with a copy of the assignment's source.

    ``held_out``: the run's held-out samples (:func:`prepare_held_out`); None for an assignment
    whose tests use none. ``source``: the folder of the assignment's source (default: its folder of
    ``solutions/``; a Dask worker's copy of the client's). ``late_penalty``: the policy for late work
    (:mod:`.late`)."""
    shutil.copytree(
        SOLUTIONS_DIR / assignment if source is None else source,
        root / "source" / assignment,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
    )
    if sandboxed:
        sandbox.write_kernelspec(root / "jupyter" / "kernels")
    config = CONFIG_TEMPLATE.format(
        course_config=str(COURSE_CONFIG),
        lock_timeout=GRADEBOOK_LOCK_TIMEOUT,
        course_id=COURSE_ID,
        cell_timeout=max(1, round(cell_timeout)),
        held_out_seed=held_out["seed"] if held_out else None,
        held_out_cache=held_out["cache"] if held_out else "",
    )
    if sandboxed:
        # Whatever kernel a submitted notebook asks for, it runs on the sandboxed one.
        config += f"\nc.TrustedExecute.kernel_name = {sandbox.KERNEL_NAME!r}\n"
    config += late.policy_config(late_penalty)
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


def generate_assignment(course: Path, assignment: str, deadline: datetime.datetime | None = None) -> float:
    """Record the assignment, its test cells and hidden tests in the gradebook, with ``deadline`` (naive
    UTC) as its due date; its max score.

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
        gb.update_or_create_assignment(assignment, duedate=deadline)
        return gb.find_assignment(assignment).max_score
