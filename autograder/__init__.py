"""Release and autograde the course's exercises with nbgrader.

    python -m autograder release [ASSIGNMENT ...]          # solutions/ -> exercises/
    python -m autograder grade ASSIGNMENT SUBMISSIONS_DIR  # grades.csv and feedback

The same from Python: :func:`release` and :func:`grade`.
"""

from .course import AutograderError, UsageError, find_assignments
from .grade import grade
from .release import release

__all__ = ["AutograderError", "UsageError", "find_assignments", "grade", "release"]
