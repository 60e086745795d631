"""Keep hidden tests out of the feedback that students receive.

nbgrader 0.9.6 builds feedback from the autograded notebook, into which autograde has put the
hidden tests back, and its ``generate_feedback`` does not remove them again. The private grading
course of :mod:`autograder.batch.private_course` therefore adds :class:`HideHiddenTests` to the feedback
preprocessors, and writes the pages with :class:`FeedbackExporter`, which also makes them static:
student content is made inert before and while rendering (autograder.pages) and each page forbids
every script with a Content-Security-Policy.
"""

from jinja2 import BytecodeCache
from nbconvert.exporters import HTMLExporter
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests

from ..pages import HIDDEN_OUTPUT, with_csp
from ..testcells.outputs import STUDENT_TRACEBACK


class HideHiddenTests(ClearHiddenTests):
    """Remove the hidden tests from test cells, and the code quoted in their tracebacks.

    A failing hidden assert would otherwise show up in the traceback, with the line of
    test code around it. The error's type and message stay: they are the student's hint
    (e.g. ``AssertionError: jet counts wrong on random events``), and so does the traceback
    through the student's own code when the error came from there (autograder.testcells).
    """

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell) and self._remove_hidden_test_region(cell):
            outputs = []
            for output in cell.get("outputs", []):
                if output.get("metadata", {}).get(HIDDEN_OUTPUT):
                    continue  # what the student's code printed or raised while hidden tests called it
                if output.output_type == "error":
                    message = f"{output.ename}: {output.evalue}" if output.evalue else output.ename
                    own = [entry for entry in output.traceback if entry.startswith(STUDENT_TRACEBACK)]
                    output.traceback = [*own, message]
                outputs.append(output)
            cell.outputs = outputs
        return cell, resources


class _TemplateCodeCache(BytecodeCache):
    """Compiled Jinja templates kept in memory (Jinja checks each against its template's source)."""

    def __init__(self):
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket):
        self.compiled[bucket.key] = bucket.bytecode_to_string()


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback page exporter, compiling its templates once per grading worker.

    nbgrader makes a new exporter for each student, and each one would parse and compile the
    same templates again (about a quarter of the time a feedback page takes). A changed template
    has a new checksum, so it is never served stale.
    """

    _compiled_templates = _TemplateCodeCache()

    def from_notebook_node(self, nb, resources=None, **kwargs):
        """The page, with a Content-Security-Policy that lets no script run (see autograder.pages)."""
        page, resources = super().from_notebook_node(nb, resources, **kwargs)
        return with_csp(page), resources

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = self._compiled_templates
        return environment
