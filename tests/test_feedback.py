"""The students' feedback pages (autograder.batch.feedback): no hidden test, and no script.

The graded notebook holds the hidden tests (nbgrader puts them back from the gradebook) and what
the student's code printed or raised while they ran (marked by the grader, see
autograder.testcells.outputs). Here such a notebook is built in memory, as the grader leaves it,
and put through ``HideHiddenTests`` and ``FeedbackExporter`` as the private course configures them
(autograder.batch.private_course), without nbgrader's gradebook.
"""

from __future__ import annotations

import copy
import re

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config

from autograder.batch.feedback import FeedbackExporter, HideHiddenTests
from autograder.pages import FEEDBACK_CSP, HIDDEN_OUTPUT
from autograder.testcells.outputs import HIDDEN_ERROR_NOTE, HIDDEN_STDERR_NOTE, STUDENT_TRACEBACK

VISIBLE = 'assert list(count_objects(events, "jet")) == [2, 0], "expected jet counts [2, 0]"'
HIDDEN = (
    "many = np.zeros((50, 19, 3), dtype=np.float32)  # SECRET-INPUT\n"
    'assert np.array_equal(count_objects(many, "jet"), n_jets), "jet counts wrong on random events"'
)
SOURCE = f'{VISIBLE}\nprint("visible tests passed")\n### BEGIN HIDDEN TESTS\n{HIDDEN}\n### END HIDDEN TESTS\n'
#: What the student's code printed while the hidden tests called it: could repeat their inputs.
LEAKED = "debug: objects[0] = [[12.5 0.3 SECRET-INPUT]]\n"
STUDENT_FRAMES = (
    f'{STUDENT_TRACEBACK}Traceback (most recent call last):\n  File "/tmp/ipykernel_57/1642.py", '
    "line 4, in count_objects\n    return (objects[:, start:start + size, 0] > 0).sum(axis=1)\n"
)


def graded_test_cell(source: str = SOURCE, outputs: list | None = None):
    cell = new_code_cell(
        source,
        metadata={
            "nbgrader": {
                "grade": True,
                "grade_id": "count_objects_ignores_padding",
                "locked": True,
                "points": 3,
                "schema_version": 3,
                "solution": False,
                "task": False,
            }
        },
    )
    cell.outputs = outputs or []
    return cell


def graded_outputs() -> list:
    """A test cell's outputs as the grader writes them when a hidden test failed: the visible
    tests' print, the student's prints during the hidden tests (marked, with the note that nbgrader
    saw stderr), the failed assertion."""
    return [
        new_output("stream", name="stdout", text="visible tests passed\n"),
        new_output("display_data", data={"text/plain": LEAKED}, metadata={HIDDEN_OUTPUT: "stdout"}),
        new_output(
            "display_data", data={"text/plain": "warning: SECRET-INPUT"}, metadata={HIDDEN_OUTPUT: "stderr"}
        ),
        new_output("stream", name="stderr", text=HIDDEN_STDERR_NOTE),
        new_output(
            "error",
            ename="AssertionError",
            evalue="jet counts wrong on random events",
            traceback=["AssertionError: jet counts wrong on random events"],
        ),
    ]


def hide(cell):
    """The cell as HideHiddenTests leaves it in a notebook of its own."""
    notebook = new_notebook(cells=[cell])
    notebook, _ = HideHiddenTests().preprocess(notebook, {})
    return notebook.cells[0]


# ------------------------------------------------------------------------------ HideHiddenTests


def test_the_hidden_tests_leave_the_cells_source():
    cell = hide(graded_test_cell())
    assert "SECRET-INPUT" not in cell.source and "random events" not in cell.source
    assert "HIDDEN TESTS" not in cell.source
    assert cell.source.startswith(VISIBLE + '\nprint("visible tests passed")')


def test_what_the_student_printed_during_hidden_tests_is_left_out():
    cell = hide(graded_test_cell(outputs=graded_outputs()))
    kinds = [(output.output_type, output.get("name")) for output in cell.outputs]
    assert kinds == [("stream", "stdout"), ("stream", "stderr"), ("error", None)]
    assert "SECRET-INPUT" not in str(cell.outputs)
    # The note that something went to stderr stays: nbgrader failed the cell for it.
    assert cell.outputs[1].text == HIDDEN_STDERR_NOTE


def test_a_failed_hidden_test_keeps_its_message():
    cell = hide(graded_test_cell(outputs=graded_outputs()))
    error = cell.outputs[-1]
    assert (error.ename, error.evalue) == ("AssertionError", "jet counts wrong on random events")
    assert error.traceback == ["AssertionError: jet counts wrong on random events"]


def test_an_error_in_the_students_code_keeps_its_traceback_through_that_code():
    # A visible test called the student's function, which failed: where it failed is the student's hint.
    error = new_output(
        "error",
        ename="IndexError",
        evalue="index 19 is out of bounds for axis 1 with size 19",
        traceback=[
            STUDENT_FRAMES,
            "line of the test that called it",
            "IndexError: index 19 is out of bounds for axis 1 with size 19",
        ],
    )
    cell = hide(graded_test_cell(outputs=[error]))
    assert cell.outputs[0].traceback == [
        STUDENT_FRAMES,
        "IndexError: index 19 is out of bounds for axis 1 with size 19",
    ]


def test_traceback_lines_that_quote_the_test_code_are_removed():
    # A traceback written by a kernel (IPython's) quotes the failing test line, hidden or not.
    ipython = new_output(
        "error",
        ename="AssertionError",
        evalue="jet counts wrong on random events",
        traceback=[
            "\x1b[0;31m------------------------------------------------------------\x1b[0m",
            "\x1b[0;31mAssertionError\x1b[0m                 Traceback (most recent call last)",
            "Cell \x1b[0;32mIn[7], line 5\x1b[0m\n\x1b[0;32m----> 5\x1b[0m " + HIDDEN.splitlines()[1],
            "\x1b[0;31mAssertionError\x1b[0m: jet counts wrong on random events",
        ],
    )
    cell = hide(graded_test_cell(outputs=[ipython]))
    assert cell.outputs[0].traceback == ["AssertionError: jet counts wrong on random events"]


def test_an_error_without_a_message_shows_its_name():
    error = new_output("error", ename="ValueError", evalue="", traceback=["ValueError", "test code line"])
    assert hide(graded_test_cell(outputs=[error])).outputs[0].traceback == ["ValueError"]


def test_an_error_the_student_raised_in_a_hidden_test_shows_only_where_it_came_from():
    # As the grader writes it: the student's words in a marked output, a note in the error.
    outputs = [
        new_output(
            "display_data",
            data={"text/plain": f"{STUDENT_FRAMES}ValueError: bad SECRET-INPUT"},
            metadata={HIDDEN_OUTPUT: "error"},
        ),
        new_output(
            "error", ename="ValueError", evalue=HIDDEN_ERROR_NOTE, traceback=[f"ValueError: {HIDDEN_ERROR_NOTE}"]
        ),
    ]
    cell = hide(graded_test_cell(outputs=outputs))
    assert len(cell.outputs) == 1
    assert cell.outputs[0].traceback == [f"ValueError: {HIDDEN_ERROR_NOTE}"]


def test_a_test_cell_without_hidden_tests_is_left_as_it_is():
    outputs = [
        new_output("stream", name="stdout", text="visible tests passed\n"),
        new_output("display_data", data={"text/plain": "kept"}, metadata={HIDDEN_OUTPUT: "stdout"}),
        new_output("error", ename="AssertionError", evalue="x", traceback=["line of the test", "x"]),
    ]
    cell = graded_test_cell(source=VISIBLE, outputs=copy.deepcopy(outputs))
    assert hide(cell).outputs == outputs


def test_the_students_own_cells_are_never_cut():
    # A student may write the markers in their own cell: it is their code, shown as it is (nbgrader's
    # ClearHiddenTests would refuse the notebook instead).
    source = "# my notes\n### BEGIN HIDDEN TESTS\nx = 1\n### END HIDDEN TESTS\n"
    own = new_code_cell(
        source,
        metadata={
            "nbgrader": {
                "grade": False,
                "grade_id": "count_objects_solution",
                "locked": False,
                "schema_version": 3,
                "solution": True,
                "task": False,
            }
        },
    )
    plain = new_code_cell(source)
    notebook = new_notebook(cells=[own, plain, new_markdown_cell(source)])
    notebook, _ = HideHiddenTests().preprocess(notebook, {})
    assert [cell.source for cell in notebook.cells] == [source] * 3


# ------------------------------------------------------------------------------ FeedbackExporter


def exporter() -> FeedbackExporter:
    # The private course's feedback preprocessors, without GetGrades (it reads the gradebook).
    return FeedbackExporter(
        config=Config(
            {
                "FeedbackExporter": {
                    "preprocessors": [
                        "autograder.batch.feedback.HideHiddenTests",
                        "autograder.pages.SanitizeStudentContent",
                    ]
                }
            }
        )
    )


def graded_notebook():
    return new_notebook(
        cells=[
            new_markdown_cell("## Task 1 · Counting real objects (3 points)"),
            graded_test_cell(outputs=graded_outputs()),
        ],
        metadata={"kernelspec": {"display_name": "Python (mlhep course)", "language": "python", "name": "mlhep"}},
    )


def test_the_feedback_page_shows_no_hidden_test():
    page, _ = exporter().from_notebook_node(graded_notebook())
    assert "SECRET-INPUT" not in page and "HIDDEN TESTS" not in page
    assert "np.array_equal" not in page and "n_jets" not in page
    # The check sees the cell at all: the visible test and the hint of the failed one are there.
    assert "expected jet counts [2, 0]" in page
    assert "jet counts wrong on random events" in page


def test_the_feedback_page_forbids_every_script_before_any_can_load():
    page, _ = exporter().from_notebook_node(graded_notebook())
    meta = f'<meta http-equiv="Content-Security-Policy" content="{FEEDBACK_CSP}">'
    assert page.count(meta) == 1
    head = page.index("<head>")
    assert page.index(meta) == head + len("<head>")  # first in the head
    assert all(match.start() > page.index(meta) for match in re.finditer(r"<script", page))


def test_the_exporter_compiles_its_templates_once_per_process(monkeypatch):
    notebook = graded_notebook()
    first, _ = exporter().from_notebook_node(copy.deepcopy(notebook))
    cache = FeedbackExporter._compiled_templates
    loaded, compiled = [], []
    load = cache.load_bytecode
    monkeypatch.setattr(cache, "load_bytecode", lambda bucket: loaded.append(bucket.key) or load(bucket))
    monkeypatch.setattr(cache, "dump_bytecode", lambda bucket: compiled.append(bucket.key))
    second, _ = exporter().from_notebook_node(notebook)  # a new exporter, as nbgrader makes per student
    assert loaded, "the exporter does not use the cache"
    assert compiled == [], f"templates compiled again: {compiled}"
    assert second == first


def test_the_exported_notebook_is_not_changed():
    # nbgrader exports the graded notebook, which stays on disk for the TA with everything in it.
    notebook = graded_notebook()
    before = nbformat.writes(notebook)
    exporter().from_notebook_node(notebook)
    assert nbformat.writes(notebook) == before
