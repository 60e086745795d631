"""Generate the students' exercises (``exercises/``) from the solutions (``solutions/``).

Only nbgrader writes ``exercises/``: it removes the solutions and the hidden tests, locks the
read-only cells and records their checksums. Editing a released notebook by hand would make it
drift from its source, which tests/test_grading.py detects.
"""

from __future__ import annotations

from pathlib import Path

from .course import EXERCISES_DIR, REPO_ROOT, AutograderError, check_assignment, find_assignments, run_nbgrader


def release(assignments: list[str] | None = None, release_dir: str | Path | None = None) -> list[Path]:
    """Regenerate the released version of ``assignments`` with ``nbgrader generate_assignment``.

    Args:
        assignments: names of folders in ``solutions/``; all of them when None or empty.
        release_dir: where to write the released assignments; the course's ``exercises/``
            when None. Tests pass a temporary folder to compare with the committed release.

    Returns:
        The folders written, one per assignment.

    Raises:
        UsageError: for an unknown assignment.
        AutograderError: when nbgrader fails (its log is in the message).
    """
    assignments = list(assignments or find_assignments())
    for assignment in assignments:
        check_assignment(assignment)
    release_dir = Path(release_dir).resolve() if release_dir else EXERCISES_DIR
    release_dir.mkdir(parents=True, exist_ok=True)

    written = []
    for assignment in assignments:
        # --no-db: releasing must not create or change a gradebook in the repository.
        # An absolute release_directory works because nbgrader joins it onto the course root.
        result = run_nbgrader(
            [
                "generate_assignment",
                assignment,
                "--force",
                "--no-db",
                f"--CourseDirectory.release_directory={release_dir}",
            ],
            cwd=REPO_ROOT,
        )
        if result.returncode != 0:
            raise AutograderError(f"nbgrader could not release {assignment}:\n{result.output}")
        written.append(release_dir / assignment)
    return written
