"""Release and autograde the course's exercises with nbgrader.

    python -m autograder release [ASSIGNMENT ...]          # solutions/ -> exercises/
    python -m autograder grade ASSIGNMENT SUBMISSIONS_DIR  # grades.csv and feedback
    python -m autograder formgrader OUT_DIR                # grade written answers by hand

The same from Python: ``autograder.release.release`` and ``autograder.batch.run.grade``
(import them from their modules). The package itself imports almost nothing, so that the
sandbox's kernel launcher (``python -m autograder.sandbox.launcher``) starts fast: nbgrader
alone takes seconds to import.
"""

import sys

# jsonschema (under nbformat, which nbgrader and the grader import) builds a grammar for IRI
# checks when it is imported, if rfc3987-syntax is installed: about 3 s, in the grader and in
# each grading worker (python-jsonschema/jsonschema#1428). Notebook schemas check no IRIs, so
# the grader's processes go without it: jsonschema skips a checker it cannot import.
sys.modules.setdefault("rfc3987_syntax", None)

from .course import AutograderError, UsageError, find_assignments  # noqa: E402

__all__ = ["AutograderError", "UsageError", "find_assignments"]
