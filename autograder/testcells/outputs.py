"""What a test cell shows: the grader's prints and the student's, its score, its error.

What the student's code printed or raised while hidden tests called it is marked
(:data:`~autograder.pages.HIDDEN_OUTPUT`): the graded notebook keeps it for the TA, the feedback
leaves it out (:mod:`autograder.batch.feedback`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import nbformat

from ..pages import HIDDEN_OUTPUT

if TYPE_CHECKING:
    from .execute import TrustedExecute

#: Starts the traceback of an error in the student's own code (the feedback keeps it; see feedback.py).
STUDENT_TRACEBACK = "In your code:\n"
#: The line of a test cell's source after which its tests are hidden from students (nbgrader's).
HIDDEN_TESTS_MARK = "### BEGIN HIDDEN TESTS"
HIDDEN_ERROR_NOTE = "raised by your code while the hidden tests ran (its message is not shown)"
HIDDEN_NOT_RUN = "the hidden tests did not run: the notebook stopped before its end"
HIDDEN_STDERR_NOTE = (
    "[your code wrote to stderr while the hidden tests ran; not shown here, since it could repeat their inputs]\n"
)


class ScoreError(Exception):
    """A test cell's partial score is not a finite number between 0 and the cell's points."""


def partial_score(value: Any, points: float) -> float:
    """A test cell's last value as the partial score nbgrader reads, checked.

    nbgrader gives full points for a result that is not a number, is negative or is NaN (its
    partial-credit path reads ``float(text) >= 0`` as the only check), so a score computed from a
    student's NaN would earn everything. Here anything but a finite number in [0, points] fails the
    cell instead (0 points, with the reason in its output).
    """
    import numbers

    import numpy as np

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ScoreError(f"the test's result is a {type(value).__name__}, not a score")
    score = float(value)
    if not np.isfinite(score) or not 0.0 <= score <= points:
        raise ScoreError(f"the test's score {score!r} is not a number between 0 and {points:g}, so it counts 0")
    return score


def add_stream(outputs: list, name: str, text: str, hidden: bool = False) -> None:
    """Append ``text`` to the cell's outputs, merged with a preceding output of the same stream.

    ``hidden``: the student's code printed it while hidden tests called it. nbformat allows no
    metadata on a stream, so such text goes into a ``display_data`` output marked HIDDEN_OUTPUT
    (kept in the graded notebook for the TA, left out of the feedback); text on stderr also
    leaves a stderr stream saying so, since nbgrader fails a test cell that wrote to stderr.
    """
    if not text:
        return
    previous = outputs[-1] if outputs else {}
    if not hidden:
        if previous.get("output_type") == "stream" and previous.get("name") == name:
            previous["text"] += text
        else:
            outputs.append(nbformat.v4.new_output("stream", name=name, text=text))
        return
    if previous.get("output_type") == "display_data" and previous.get("metadata", {}).get(HIDDEN_OUTPUT) == name:
        previous["data"]["text/plain"] += text
    else:
        outputs.append(
            nbformat.v4.new_output("display_data", data={"text/plain": text}, metadata={HIDDEN_OUTPUT: name})
        )
    if name == "stderr" and not any(
        output.get("output_type") == "stream"
        and output.get("name") == "stderr"
        and output.get("text") == HIDDEN_STDERR_NOTE
        for output in outputs
    ):
        outputs.append(nbformat.v4.new_output("stream", name="stderr", text=HIDDEN_STDERR_NOTE))


class CellPrints:
    """sys.stdout/sys.stderr while a test cell runs here: its prints become the cell's outputs."""

    def __init__(self, executor: TrustedExecute, name: str):
        self.executor, self.name = executor, name

    def write(self, text: str) -> int:
        self.executor.pending_prints.append((self.name, str(text)))
        return len(text)

    def flush(self) -> None:
        pass
