"""Release and autograde the course's exercises with nbgrader.

    python -m autograder release [ASSIGNMENT ...]          # solutions/ -> exercises/
    python -m autograder grade ASSIGNMENT SUBMISSIONS_DIR  # grades.csv and feedback
    python -m autograder formgrader OUT_DIR                # grade written answers by hand

The same from Python: :func:`release` and :func:`grade`.
"""

from .course import AutograderError, UsageError, find_assignments

__all__ = ["AutograderError", "UsageError", "find_assignments", "grade", "release"]


def __getattr__(name):
    # grade and release import nbgrader (seconds): only when asked for, so that the sandbox's
    # kernel launcher (python -m autograder.kernel_launcher) starts fast.
    if name in ("grade", "release"):
        module = __import__(f"{__name__}.{name}", fromlist=[name])
        globals()[name] = function = getattr(module, name)  # the function, not the submodule
        return function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
