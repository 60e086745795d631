"""Plain-words reasons for a grade, so that a TA can answer the student.

Three places where something can go wrong, one function each: the submitted file
(:func:`notebook_problem`), the run of each cell (:func:`describe_notebook`) and nbgrader
itself (:func:`explain_failure`). Reasons name cells by their grade id and never quote
test code, so they can be passed on to students as they are.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import nbformat

# Error names of a cell stopped at its time limit: nbgrader records CellTimeoutError, and the
# kernel may add the KeyboardInterrupt raised by the interrupt.
INTERRUPTED = {"CellTimeoutError", "KeyboardInterrupt"}
# Errors of the grader itself (autograder.testcells) in a test cell, in plain words.
ERROR_NOTES = {
    "ChannelError": "the notebook's kernel stopped answering the grader: it died, was stopped, or the "
    "notebook's code interfered with grading",
    "OutputLimitExceeded": "the cell printed more than the output limit and was stopped",
    "StudentError": "the notebook's code raised an error",
    "HiddenTestsNotRun": "the notebook stopped before its end, so its hidden tests did not run",
    "ScoreError": "the score the test computed from the notebook's results was not a finite number "
    "in range (for example the results were NaN), which counts 0",
}


def notebook_problem(path: Path) -> str | None:
    """Why the file at ``path`` is not a notebook nbgrader can read, or None if it is one."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return "not a valid notebook: the file is not UTF-8 text"
    try:
        json.loads(text)  # json gives the line of the error, nbformat would not
    except json.JSONDecodeError as error:
        return f"not a valid notebook: invalid JSON (line {error.lineno})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. missing cell ids, which nbgrader adds
            notebook = nbformat.reads(text, as_version=4)
            nbformat.validate(notebook)
    except nbformat.ValidationError as error:
        return f"not a valid notebook: {error.message}"
    except Exception:  # nbformat raises many types on JSON that is not a notebook
        return "not a valid notebook: the JSON does not have a notebook's structure"
    return None


def describe_notebook(
    path: Path, scores: dict[str, tuple[float, float, bool]], cell_timeout: float, label: str = ""
) -> list[str]:
    """What went wrong while an autograded notebook ran; an empty list when nothing did.

    Args:
        path: the notebook written by ``nbgrader autograde``, with its outputs.
        scores: grade id -> (score, max_score, needs_manual_grade) of each graded cell, from
            the gradebook.
        cell_timeout: the time limit of a cell, in seconds, for the message.
        label: put before cell names, e.g. the notebook's name when an assignment has several.
    """
    notebook = nbformat.read(path, as_version=4)
    messages = []
    present = {cell.metadata.get("nbgrader", {}).get("grade_id") for cell in notebook.cells}
    for grade_id in sorted(set(scores) - present):
        # nbgrader gives such a cell 0 and flags it for manual grading.
        messages.append(
            f"test cell {label}{grade_id} is missing from the notebook (deleted, or its metadata was changed)"
        )
    for index, cell in enumerate(notebook.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        name = label + (grade_id or f"number {index + 1}")
        score, max_score, needs_manual_grade = scores.get(grade_id, (0, 0, False))
        # Written answers wait for a person (the to_grade_by_hand column); only code cells run.
        if needs_manual_grade or cell.cell_type != "code":
            continue
        errors = [output.ename for output in cell.outputs if output.output_type == "error"]
        interrupted = bool(INTERRUPTED.intersection(errors))
        if interrupted:
            messages.append(f"cell {name} was interrupted after the {cell_timeout:g} s time limit")
        if grade_id in scores:
            if score < max_score:
                messages.append(f"test cell {name} failed{_why_test_failed(cell, errors, score, max_score)}")
        elif errors and not interrupted:
            note = ERROR_NOTES.get(errors[0])
            messages.append(f"cell {name}: {note}" if note else f"cell {name} raised {errors[0]}")
    return messages


def _why_test_failed(cell, errors: list[str], score: float, max_score: float) -> str:
    """A short note in parentheses on why a test cell lost points ('' if nothing to say)."""
    if errors:
        return f" ({ERROR_NOTES.get(errors[-1], errors[-1])})"
    if any(output.output_type == "stream" and output.name == "stderr" for output in cell.outputs):
        # nbgrader gives 0 to a test cell with any output on stderr, warnings included.
        return " (it wrote to stderr, e.g. a warning, which nbgrader counts as a failure)"
    if score > 0:
        return f" ({score:g} of {max_score:g} points)"
    return ""


def explain_failure(log: str, cell_timeout: float) -> str:
    """Why ``nbgrader autograde`` could not grade a submission, from its log."""
    if "DeadKernelError" in log or "Kernel died" in log:
        return "the kernel died (the notebook crashed Python, e.g. it ran out of memory or called exit)"
    if "Interrupting kernel" in log and "CellTimeoutError" in log:
        # The interrupt was ignored (e.g. the code catches KeyboardInterrupt or blocks SIGINT),
        # and nbgrader gives up on a notebook whose kernel does not answer any more.
        return (
            f"a cell ran past the {cell_timeout:g} s time limit and did not stop when "
            "interrupted, so nbgrader gave up on the notebook"
        )
    if "UnresponsiveKernelError" in log or "kernel became unresponsive" in log:
        return "the kernel stopped responding and could not be interrupted"
    duplicates = sorted(set(re.findall(r"Cell with id '(.+?)' exists multiple times", log)))
    if duplicates:
        # nbgrader then fails with a misleading "old version" message.
        return (
            f"cell {', '.join(duplicates)} appears more than once in the notebook (a copied cell), "
            "which nbgrader cannot grade"
        )
    # Otherwise the first error nbgrader logged, which names the problem (a deleted test
    # cell, a changed grade id, ...), without the traceback.
    if "Notebook failed to validate" in log:
        return (
            "the notebook's nbgrader cell metadata is broken (a cell's grade id or type was edited), "
            "so nbgrader could not grade it"
        )
    for line in log.splitlines():
        match = re.search(r"(?:\| |\[)ERROR\] (.+)", line)  # nbgrader's command line or its API's log
        if match and not match.group(1).startswith(("There was an error", "Traceback", "Please see")):
            return f"nbgrader could not grade the notebook: {match.group(1).strip()}"
    return "nbgrader could not grade the notebook (see its log)"
