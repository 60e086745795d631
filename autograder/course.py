"""Where the course lives, and how nbgrader is run.

The repository is the nbgrader course root: ``solutions/<assignment>/`` holds each exercise
with its solutions and hidden tests (nbgrader's source folder) and ``exercises/<assignment>/``
the version released to students.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil  # finds the kernels nbgrader starts, so a stopped run leaves none behind

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO_ROOT / "solutions"
EXERCISES_DIR = REPO_ROOT / "exercises"
COURSE_CONFIG = REPO_ROOT / "nbgrader_config.py"


class AutograderError(Exception):
    """A problem to report in plain words, without a traceback (the CLI exits with 1)."""


class UsageError(AutograderError):
    """Bad input from the person running the command (the CLI exits with 2)."""


def find_assignments() -> list[str]:
    """Names of all assignments: the folders of ``solutions/`` that contain a notebook."""
    return sorted(
        folder.name for folder in SOLUTIONS_DIR.iterdir() if folder.is_dir() and any(folder.glob("*.ipynb"))
    )


def check_assignment(assignment: str) -> None:
    """Raise UsageError unless ``assignment`` is one of the course's assignments."""
    known = find_assignments()
    if assignment not in known:
        raise UsageError(
            f"no assignment named {assignment!r} in {SOLUTIONS_DIR}; "
            f"the assignments are: {', '.join(known) or 'none'}"
        )


def notebook_names(assignment: str) -> list[str]:
    """File names of the notebooks of ``assignment`` (e.g. ``["00_getting_started.ipynb"]``)."""
    return sorted(path.name for path in (SOLUTIONS_DIR / assignment).glob("*.ipynb"))


def nbgrader_api(course_root: Path):
    """nbgrader's API on the course at ``course_root`` (read from its ``nbgrader_config.py``), in this
    process, and the configuration it was made with (the grading worker changes it per student)."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_root)).load_config()
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config), config


@dataclass
class RunResult:
    """What a finished (or stopped) nbgrader command left behind."""

    returncode: int | None  # None when it was stopped at its time limit
    output: str  # stdout and stderr together (nbgrader logs to stderr)

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run_nbgrader(
    args: list[str], cwd: Path, timeout: float | None = None, log_path: Path | None = None
) -> RunResult:
    """Run ``nbgrader ARGS`` in ``cwd``; stop it and everything it started after ``timeout`` s.

    nbgrader runs in a subprocess so that nothing a notebook does (an endless loop, a crash,
    ``sys.exit``) can stop the caller. Its output goes to a file (``log_path``, else a
    temporary one) rather than a pipe, so a chatty run can never block on a full pipe.
    """
    # nbgrader runs the `alembic` command when it creates a gradebook: find it next to Python
    # even when the virtual environment is not activated.
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    with open(log_path, "w+", errors="replace") if log_path else tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "nbgrader", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # its own process group, see kill_tree
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(process)
            returncode = None
        except BaseException:  # e.g. Ctrl-C, which does not reach a process in its own session
            kill_tree(process)
            raise
        log.seek(0)
        return RunResult(returncode, log.read())


def kill_tree(process: subprocess.Popen) -> None:
    """Kill ``process``, its process group and the process groups of all its descendants.

    Killing nbgrader's process group is not enough: jupyter_client starts every kernel in a
    new session (process group), so the kernel, and whatever the notebook started, would live on.
    """
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    own_group = os.getpgrp()
    for pid in [process.pid] + [child.pid for child in descendants]:
        try:
            group = os.getpgid(pid)
            if group != own_group:  # never the group of the grader itself
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # already gone
    process.wait()
