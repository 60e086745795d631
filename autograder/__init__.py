"""Release and autograde the course's exercises with nbgrader.

    python -m autograder release [ASSIGNMENT ...]          # solutions/ -> exercises/
    python -m autograder grade ASSIGNMENT SUBMISSIONS_DIR  # grades.csv and feedback
    python -m autograder formgrader OUT_DIR                # grade written answers by hand

The same from Python: ``autograder.release.release`` and ``autograder.grade.grade``
(import them from their modules). The package itself imports almost nothing, so that the
sandbox's kernel launcher (``python -m autograder.kernel_launcher``) starts fast: nbgrader
alone takes seconds to import.
"""

from .course import AutograderError, UsageError, find_assignments

__all__ = ["AutograderError", "UsageError", "find_assignments"]
