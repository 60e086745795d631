"""nbgrader's Execute step with the autograded test cells run in the grader (see the package)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import warnings
from pathlib import Path

import nbformat
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_async
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, Unicode

from ..pages import HIDDEN_OUTPUT
from .channel import Channel
from .outputs import (
    HIDDEN_ERROR_NOTE,
    HIDDEN_NOT_RUN,
    HIDDEN_TESTS_MARK,
    STUDENT_TRACEBACK,
    CellPrints,
    add_stream,
    partial_score,
)
from .proxies import CellTimedOut, StudentObject, TrustedNamespace


def given_imports(source_notebook: Path, test_sources: list[str]) -> str:
    """The import statements of the assignment's given cells that bind a name the tests use."""
    from IPython.core.inputtransformer2 import TransformerManager

    used = set()
    for source in test_sources:
        with contextlib.suppress(SyntaxError):
            used |= {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}
    notebook = nbformat.read(source_notebook, as_version=4)
    statements = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or utils.is_solution(cell) or utils.is_grade(cell):
            continue
        try:
            tree = ast.parse(TransformerManager().transform_cell(cell.source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                bound = {(alias.asname or alias.name).split(".")[0] for alias in node.names}
                if bound & used:
                    statements.append(ast.unparse(node))
    return "\n".join(statements)


def error_text(error: BaseException) -> str:
    """An error's message, made here: a message that is the student's object (``assert x, obj``)
    shows as its proxy's repr, never by asking the kernel, whose conversation is over by then."""
    if any(isinstance(arg, StudentObject) for arg in error.args):
        return ", ".join(repr(arg) if isinstance(arg, StudentObject) else str(arg) for arg in error.args)
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - a message that cannot be printed is no message
        return ""


#: Largest message the grader takes from a kernel on any channel (zmq's MAXMSGSIZE: a larger one
#: drops the connection instead of filling the grader's memory). Outputs are limited far below.
MAX_KERNEL_MESSAGE = 64 * 2**20


class BoundedKernelManager(AsyncKernelManager):
    """jupyter_client's kernel manager, whose clients refuse messages over MAX_KERNEL_MESSAGE."""

    def client(self, **kwargs):
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, MAX_KERNEL_MESSAGE)  # a default for its sockets
        client = super().client(context=context, **kwargs)
        client._created_context = True  # the client destroys it when it is done
        return client


class TrustedExecute(Execute):
    """nbgrader's Execute, with the autograded test cells run in the grader (see the package)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", BoundedKernelManager)
        super().__init__(*args, **kwargs)

    source_root = Unicode("", help="the private course's source folder (the assignment's notebooks)").tag(
        config=True
    )
    # A cell stopped for flooding its output leaves a backlog of output messages: move on rather
    # than fail the notebook (test cells run here, so a lost output can never give points).
    raise_on_iopub_timeout = Bool(False).tag(config=True)
    output_limit_bytes = Integer(
        2 * 2**20, help="text a cell may print before it is stopped (the rest is dropped)"
    ).tag(config=True)
    held_out_seed = Integer(None, allow_none=True, help="seed of this run's held-out samples").tag(config=True)
    held_out_cache = Unicode("", help="the grader's cache holding this run's held-out samples").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_notebook(info["notebook"], info["assignment"])
            solutions = {cell.name for cell in notebook.solution_cells}
            sources = {cell.name: cell.source for cell in notebook.source_cells}
            self.test_sources = {
                cell.name: sources[cell.name]
                for cell in notebook.grade_cells
                if cell.cell_type == "code" and cell.name not in solutions
            }
            self.points = {cell.name: cell.max_score for cell in notebook.grade_cells}
        from mlhep.held_out import use_grading_samples

        use_grading_samples(self.held_out_seed, self.held_out_cache)
        self.channel = Channel(self)
        self.namespace = TrustedNamespace(self.channel)
        self.pending_prints: list[tuple[str, str]] = []
        self.deferred: list[tuple] = []  # hidden tests waiting for the notebook's last cell
        self.flood: dict[int, int] = {}
        source_notebook = Path(self.source_root) / info["assignment"] / f"{info['notebook']}.ipynb"
        imports = given_imports(source_notebook, list(self.test_sources.values()))
        try:
            exec(compile(imports, "<the assignment's imports>", "exec"), self.namespace)
        except Exception as error:  # noqa: BLE001 - the tests that need them will fail and say so
            self.log.warning("could not import the assignment's tools in the grader: %s", error)
        # The grader's numerical libraries on one thread: what a student's request costs here
        # stays within one core (and the cell's deadline, see deadline_alarm).
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if (
            cell.cell_type == "code"
            and utils.is_grade(cell)
            and not utils.is_solution(cell)
            and grade_id in self.test_sources
        ):
            self.run_test_cell(cell, self.test_sources[grade_id], self.points.get(grade_id, 0.0))
        else:
            cell, resources = super().preprocess_cell(cell, resources, index)
        if index == len(self.nb.cells) - 1:  # the notebook's last cell: the kernel is still up
            self.run_hidden_tests()
        return cell, resources

    def run_test_cell(self, cell, source: str, points: float) -> None:
        """Run a test cell's source (from the gradebook) here, against the student's kernel.

        The visible tests run now. The hidden tests (from ``### BEGIN HIDDEN TESTS`` on) run after
        the notebook's last cell (:meth:`run_hidden_tests`), so no later cell of the student's can
        print what its functions kept of their inputs; what the student's code prints or raises
        while they run is marked, and the feedback leaves it out (feedback.HideHiddenTests).
        """
        cell.outputs = []
        cell.execution_count = None
        tree = ast.parse(source)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        hidden_line = next(
            (number for number, line in enumerate(source.splitlines(), 1) if line.strip() == HIDDEN_TESTS_MARK),
            None,
        )
        visible = [node for node in tree.body if hidden_line is None or node.lineno < hidden_line]
        hidden = tree.body[len(visible) :]
        if last is not None and hidden_line is not None and last.lineno > hidden_line:
            hidden_last, last = last, None
        else:
            hidden_last = None
        passed = self.run_statements(cell, visible, last, points, hidden=False)
        if passed and (hidden or hidden_last is not None):
            # Until they have run, the cell fails: a notebook that stops first earns no hidden points.
            cell.outputs.append(
                nbformat.v4.new_output(
                    "error", ename="HiddenTestsNotRun", evalue=HIDDEN_NOT_RUN, traceback=[HIDDEN_NOT_RUN]
                )
            )
            self.deferred.append((cell, hidden, hidden_last, points))

    def run_hidden_tests(self) -> None:
        """The hidden tests of every test cell whose visible tests passed, after the last cell."""
        deferred, self.deferred = self.deferred, []
        for cell, statements, last, points in deferred:
            cell.outputs = [output for output in cell.outputs if output.get("evalue") != HIDDEN_NOT_RUN]
            self.run_statements(cell, statements, last, points, hidden=True)

    def run_statements(self, cell, statements: list, last, points: float, hidden: bool) -> bool:
        """Run some of a test cell's statements, and its last expression (its score) if given, into
        the cell's outputs; False if they failed (the error is among the outputs)."""
        self.pending_prints = []
        self.channel.hidden = hidden
        try:
            with (
                contextlib.redirect_stdout(CellPrints(self, "stdout")),
                contextlib.redirect_stderr(CellPrints(self, "stderr")),
                warnings.catch_warnings(),
            ):
                self.channel.begin(cell.outputs, self._get_timeout(cell))
                try:
                    exec(compile(ast.Module(statements, type_ignores=[]), "<test cell>", "exec"), self.namespace)
                    value = None
                    if last is not None:
                        value = eval(compile(ast.Expression(last.value), "<test cell>", "eval"), self.namespace)
                    self.flush_prints()
                    if value is not None:
                        cell.outputs.append(
                            nbformat.v4.new_output(
                                "execute_result",
                                data={"text/plain": repr(partial_score(value, points))},
                                execution_count=None,
                            )
                        )
                finally:
                    self.flush_prints()
                    self.channel.end()
            return True
        except CellTimedOut:
            self.flush_prints()
            cell.outputs.append(
                nbformat.v4.new_output(
                    "error",
                    ename="CellTimeoutError",
                    evalue="",
                    traceback=[f"CellTimeoutError: the cell ran past its time limit of {self.timeout} s"],
                )
            )
        except Exception as error:  # noqa: BLE001 - a failed test scores 0, whatever failed
            self.flush_prints()
            student_traceback = getattr(error, "student_traceback", None)
            message = error_text(error)
            last_line = f"{type(error).__name__}: {message}" if message else type(error).__name__
            traceback = [STUDENT_TRACEBACK + student_traceback] if student_traceback else []
            if student_traceback is not None and hidden:
                # The student's own words, raised in a hidden test, could repeat its inputs: the
                # error says only where it came from, and its text goes where the feedback drops it.
                cell.outputs.append(
                    nbformat.v4.new_output(
                        "display_data",
                        data={"text/plain": "\n".join([*traceback, last_line])},
                        metadata={HIDDEN_OUTPUT: "error"},
                    )
                )
                cell.outputs.append(
                    nbformat.v4.new_output(
                        "error",
                        ename=type(error).__name__,
                        evalue=HIDDEN_ERROR_NOTE,
                        traceback=[f"{type(error).__name__}: {HIDDEN_ERROR_NOTE}"],
                    )
                )
            else:
                cell.outputs.append(
                    nbformat.v4.new_output(
                        "error", ename=type(error).__name__, evalue=message, traceback=[*traceback, last_line]
                    )
                )
        finally:
            self.channel.hidden = False
        return False

    def flush_prints(self) -> None:
        for name, text in self.pending_prints:
            add_stream(self.channel.outputs, name, text)
        self.pending_prints = []

    # --- output limit of the student's own cells
    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = len(str(content.get("text", ""))) + sum(len(str(v)) for v in content.get("data", {}).values())
        used = self.flood.get(cell_index, 0) + size
        self.flood[cell_index] = used
        if used > self.output_limit_bytes:
            if used - size <= self.output_limit_bytes:  # first time over: stop the cell
                asyncio.ensure_future(ensure_async(self.km.interrupt_kernel()))
                outs.append(
                    nbformat.v4.new_output(
                        "error",
                        ename="OutputLimitExceeded",
                        evalue="",
                        traceback=[
                            f"OutputLimitExceeded: the cell printed more than "
                            f"{self.output_limit_bytes / 2**20:g} MB and was stopped"
                        ],
                    )
                )
            return None
        return super().output(outs, msg, display_id, cell_index)
