"""Test cells that run in the grader, out of reach of the student's code.

Plain nbgrader runs the test cells in the student's kernel, where one line of student code can
rewrite later cells, patch ``numpy.isclose`` or hide every error. Here nbgrader's ``Execute``
step is replaced by :class:`TrustedExecute`: the student's cells still run in their sandboxed
kernel, but each autograded test cell runs in the grader's own process, from the source kept
in the gradebook (hidden tests included, whatever the submitted cell says), in a namespace of
its own:

* the names the assignment's given cells import (``np``, ``roc_auc_score``, ``data_fetch``)
  are imported here, so student code cannot replace the tools a test judges with;
* every other name is looked up in the student's notebook (:mod:`autograder.remote` answers
  inside the kernel). Plain data (numbers, strings, lists, dicts, numpy arrays) comes back as a
  copy; anything else, such as a student's function or model, as a :class:`StudentObject` that
  can only ask the kernel to call it, index it or convert it to plain data. Comparisons and
  truth tests of a ``StudentObject`` act on that plain data, never on the student's
  ``__eq__`` or ``__bool__``;
* objects of the test passed into student code (a classifier factory) stay here, and the
  kernel gets a proxy that may call them or their public methods.

Assertions, scores of quality tests and the truth labels of held-out data therefore never
leave the grader. A test cell's outputs are built here: its prints, the student's printed
output during the calls (stdout and stderr, as before), and its result or error. Nothing
else the kernel sends during a test cell reaches the notebook, so a forged result cannot
earn points. The rest of nbgrader (gradebook, partial credit, feedback, formgrader) is
unchanged.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import contextlib
import queue
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import nbformat
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_async, run_sync
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, Unicode

from . import wire
from .pages import HIDDEN_OUTPUT

#: The kernel-side call that answers a test cell's requests (see autograder.remote).
SERVE_CODE = '__import__("autograder.remote", fromlist=["serve"]).serve(globals())'
#: Builtin exceptions that student code may raise through a test (e.g. the ValueError a test
#: expects); any other error of student code arrives as StudentError.
FORWARDED_ERRORS = {name: getattr(builtins, name) for name in (
    "ArithmeticError", "AssertionError", "AttributeError", "EOFError", "FloatingPointError", "ImportError",
    "IndexError", "KeyError", "LookupError", "MemoryError", "ModuleNotFoundError", "NameError",
    "NotImplementedError", "OSError", "OverflowError", "RecursionError", "RuntimeError", "StopIteration",
    "TypeError", "UnicodeError", "ValueError", "ZeroDivisionError")}
BUILTIN_NAMES = frozenset(dir(builtins))
#: Starts the traceback of an error in the student's own code (the feedback keeps it; see feedback.py).
STUDENT_TRACEBACK = "In your code:\n"
#: The line of a test cell's source after which its tests are hidden from students (nbgrader's).
HIDDEN_TESTS_MARK = "### BEGIN HIDDEN TESTS"
HIDDEN_ERROR_NOTE = "raised by your code while the hidden tests ran (its message is not shown)"
HIDDEN_STDERR_NOTE = ("[your code wrote to stderr while the hidden tests ran; not shown here, since it "
                      "could repeat their inputs]\n")


class StudentError(Exception):
    """An error raised by the student's code that is not a builtin exception."""


class CellTimedOut(BaseException):
    """The test cell ran past its time limit (a BaseException: a test's ``except`` must not eat it)."""


class ChannelError(Exception):
    """The kernel broke the conversation with the grader (died, stopped answering, sent garbage)."""


# ------------------------------------------------------------------------------ proxies

class StudentObject:
    """An object living in the student's kernel: a function, a model, a custom result ...

    Attribute access, calls, indexing, ``len`` and iteration are forwarded to the kernel and
    give plain data or further ``StudentObject`` s. Comparisons, arithmetic and truth tests
    first convert the object to a plain numpy array *in the kernel* and then act on that array
    here, so the student's own ``__eq__``/``__bool__`` never decide a test.
    """

    __slots__ = ("_channel", "_id", "_type")

    def __init__(self, channel: Channel, object_id: int, type_name: str):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_id", object_id)
        object.__setattr__(self, "_type", type_name)

    def _ask(self, op: str, **fields) -> Any:
        return self._channel.request({"op": op, "target": self._id, **fields})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._ask("getattr", name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("a test does not change the student's objects")

    def __call__(self, *args, **kwargs) -> Any:
        return self._ask("call", args=list(args), kwargs=kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._ask("getitem", key=key)

    def __len__(self) -> int:
        length = self._ask("len")
        if type(length) is not int or length < 0:
            raise TypeError("len() of the student's object is not a non-negative integer")
        return length

    def __iter__(self):
        iterator = self._ask("iter")
        if not isinstance(iterator, StudentObject):
            yield from iterator
            return
        while True:
            try:
                yield iterator._ask("next")
            except StopIteration:
                return

    def __array__(self, dtype=None, copy=None):
        array = self._ask("array")
        return array if dtype is None else array.astype(dtype)

    def __str__(self) -> str:
        text = self._ask("str")
        return text if type(text) is str else f"<student's {self._type}>"

    def __repr__(self) -> str:
        return f"<student's {self._type}>"

    def __format__(self, spec: str) -> str:
        return format(self._plain(), spec) if spec else str(self)

    def __hash__(self) -> int:
        return hash((id(self._channel), self._id))

    def _plain(self):
        """The object as a plain numpy array (converted in the kernel), for operators."""
        import numpy as np

        array = self.__array__()
        return array[()] if np.ndim(array) == 0 else array

    def __bool__(self) -> bool:
        return bool(self._plain())

    def __float__(self) -> float:
        return float(self._plain())

    def __int__(self) -> int:
        return int(self._plain())

    def __index__(self) -> int:
        import numpy as np

        value = self._plain()
        if np.ndim(value) != 0 or not np.issubdtype(np.asarray(value).dtype, np.integer):
            raise TypeError("the student's object is not an integer")
        return int(value)


def _operator(name: str, reflected: bool = False):
    def method(self, other):
        try:
            mine = self._plain()
        except Exception:  # noqa: BLE001 - not convertible: Python falls back to identity
            return NotImplemented
        other = other._plain() if isinstance(other, StudentObject) else other
        import operator

        function = getattr(operator, name)
        return function(other, mine) if reflected else function(mine, other)
    return method


for _name in ("eq", "ne", "lt", "le", "gt", "ge", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow",
              "and_", "or_", "xor", "matmul"):
    _dunder = _name.rstrip("_")
    setattr(StudentObject, f"__{_dunder}__", _operator(_name))
    if _name not in ("eq", "ne", "lt", "le", "gt", "ge"):
        setattr(StudentObject, f"__r{_dunder}__", _operator(_name, reflected=True))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(StudentObject, f"__{_name}__", (lambda op: lambda self: op(self._plain()))(
        getattr(__import__("operator"), _name)))


# ------------------------------------------------------------------------------ the channel

class Channel:
    """The grader's end of the conversation with :mod:`autograder.remote` in one kernel."""

    def __init__(self, executor: TrustedExecute):
        self.executor = executor
        self.callbacks: dict[int, Any] = {}
        self.serve_id: str | None = None
        self.serve_done = False
        self.outputs: list = []
        self.deadline: float | None = None
        self.stream_bytes = 0
        self.broken: str | None = None
        self.hidden = False  # True while a test cell's hidden tests run

    # --- values
    def reference(self, value: Any) -> dict:
        self.callbacks[id(value)] = value
        return {"callback": id(value), "type": type(value).__name__}

    def resolve(self, data: dict) -> Any:
        if "ref" in data:
            if type(data["ref"]) is not int:
                raise wire.WireError("bad reference")
            return StudentObject(self, data["ref"], str(data.get("type", "object"))[:100])
        try:
            return self.callbacks[data["callback"]]
        except (KeyError, TypeError):
            raise wire.WireError("reference to an object the grader never gave out") from None

    # --- one test cell
    def begin(self, outputs: list, timeout: float | None) -> None:
        self.outputs, self.stream_bytes = outputs, 0
        self.deadline = None if timeout is None else time.monotonic() + timeout
        if self.broken:
            raise ChannelError(self.broken)
        kc = self.executor.kc
        self.serve_id = kc.execute(SERVE_CODE, silent=False, store_history=False, allow_stdin=True,
                                   stop_on_error=False)
        self.serve_done = False
        first = self._receive()
        if first.get("op") != "ready":
            self._break("the notebook's kernel did not start the grader's agent")

    def end(self) -> None:
        """Tell the agent the cell is over and collect its last output."""
        if self.serve_id is None:
            return
        try:
            if not self.serve_done and not self.broken:
                self._send({"op": "done"})
            self._wait_for_serve(grace=10)
        finally:
            self.serve_id = None

    def request(self, message: dict) -> Any:
        """Ask the kernel; its answer as plain data or StudentObject (errors are raised here)."""
        self.executor.flush_prints()
        self._send(message)
        while True:
            incoming = self._receive()
            op = incoming["op"]
            if op == "result":
                return incoming.get("value")
            if op == "error":
                raise _student_exception(incoming)
            if op in ("call", "getattr"):
                self._send(self._answer_callback(incoming))
                continue
            self._break(f"unexpected message {op!r} from the notebook's kernel")

    def _answer_callback(self, request: dict) -> dict:
        """Carry out the kernel's request on one of the test's objects (calls and public attributes only).

        The work is the student's asking but runs here, so it runs under the cell's deadline
        (:func:`deadline_alarm`) and, like all of the grader's work, on one thread.
        """
        with deadline_alarm(self.deadline):
            return self._carry_out_callback(request)

    def _carry_out_callback(self, request: dict) -> dict:
        try:
            target = self.callbacks[request["target"]]
            if request["op"] == "call":
                if not callable(target):
                    raise TypeError(f"a {type(target).__name__} is not callable")
                value = target(*request.get("args", []), **request.get("kwargs", {}))
            else:
                name = request.get("name", "")
                if not name.isidentifier() or name.startswith("_"):
                    raise AttributeError(f"the grader's objects have no attribute {name!r} for student code")
                value = getattr(target, name)
            if type(value).__name__ == "module":
                raise TypeError("the grader does not hand out modules")
            return {"op": "result", "value": value}
        except (CellTimedOut, ChannelError):
            raise
        except Exception as error:  # noqa: BLE001 - reported to the student's code as its exception
            return {"op": "error", "type": type(error).__name__, "message": str(error)[:500], "traceback": ""}

    # --- messages
    def _send(self, message: dict) -> None:
        self.executor.kc.input(wire.dumps(message, self.reference))

    def _receive(self) -> dict:
        """The kernel's next message (an input request of the agent), within the cell's time limit."""
        kc = self.executor.kc
        while True:
            self._drain_iopub()
            self._check_shell()
            if self.serve_done:
                self._break("the notebook's kernel stopped answering the grader (the grader's agent was ended "
                            "or replaced by the notebook's code)")
            remaining = None if self.deadline is None else self.deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._stop_at_deadline()
            try:
                msg = run_sync(kc.get_stdin_msg)(timeout=0.2 if remaining is None else min(0.2, remaining))
            except queue.Empty:
                if not run_sync(self.executor.km.is_alive)():
                    self._break("the notebook's kernel died")
                continue
            if msg["msg_type"] != "input_request" or msg["parent_header"].get("msg_id") != self.serve_id:
                continue
            try:
                return wire.loads(msg["content"].get("prompt", ""), self.resolve)
            except wire.WireError as error:
                self._break(f"the notebook's kernel sent the grader something invalid ({error})")

    def _waiting(self, get_message):
        """The messages already waiting on one of the kernel's channels that answer the agent's call."""
        while True:
            try:
                msg = run_sync(get_message)(timeout=0)
            except queue.Empty:
                return
            if msg["parent_header"].get("msg_id") == self.serve_id:
                yield msg

    def _drain_iopub(self) -> None:
        for msg in self._waiting(self.executor.kc.get_iopub_msg):
            # Only printed text of the student's code during the calls reaches the cell; results,
            # errors and displays the kernel might send are dropped: the grader writes those.
            if msg["msg_type"] == "stream":
                self._add_stream(msg["content"].get("name", "stdout"), str(msg["content"].get("text", "")))

    def _add_stream(self, name: str, text: str) -> None:
        limit = self.executor.output_limit_bytes
        if self.stream_bytes > limit:
            return
        self.stream_bytes += len(text)
        if self.stream_bytes > limit:
            text = text[: max(0, limit - (self.stream_bytes - len(text)))] + "\n[output truncated]\n"
            if self.serve_id is not None and not self.serve_done:
                run_sync(self.executor.km.interrupt_kernel)()  # stop the flood; the call ends in an error
        add_stream(self.outputs, "stderr" if name == "stderr" else "stdout", text, hidden=self.hidden)

    def _check_shell(self) -> None:
        for msg in self._waiting(self.executor.kc.get_shell_msg):
            if msg["msg_type"] == "execute_reply":
                self.serve_done = True

    def _wait_for_serve(self, grace: float) -> None:
        """Wait (at most ``grace`` s) for the kernel to finish the agent's call; interrupt it if needed."""
        end = time.monotonic() + grace
        interrupted = False
        while not self.serve_done:
            self._drain_iopub()
            self._check_shell()
            if self.serve_done:
                break
            if time.monotonic() > end:
                if interrupted:
                    self.broken = "the notebook's kernel stopped responding"
                    return
                run_sync(self.executor.km.interrupt_kernel)()
                interrupted, end = True, time.monotonic() + grace
            if not run_sync(self.executor.km.is_alive)():
                self.broken = "the notebook's kernel died"
                return
            time.sleep(0.01)
        self._drain_iopub()

    def _stop_at_deadline(self) -> None:
        run_sync(self.executor.km.interrupt_kernel)()
        self._wait_for_serve(grace=5)
        raise CellTimedOut()

    def _break(self, why: str) -> None:
        if not self.serve_done:
            # The agent waits for an answer to what it sent: end its call instead of leaving it
            # waiting (ipykernel drops a stale answer if it was not waiting after all).
            with contextlib.suppress(Exception):
                self._send({"op": "done"})
        self._wait_for_serve(grace=5)
        if not self.broken and "died" in why:
            self.broken = why
        raise ChannelError(why)


@contextlib.contextmanager
def deadline_alarm(deadline: float | None):
    """Raise CellTimedOut in this (the main) thread when ``deadline`` (time.monotonic) passes.

    The grader's objects run the student's requests in the grader (a classifier factory the
    kernel calls in a loop, say): a SIGALRM timer ends that work at the cell's deadline even
    when the kernel never asks again. Outside the main thread, where no signal can be handled,
    the deadline is checked between the kernel's requests only.
    """
    if (deadline is None or threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):  # not here, or armed by an outer call
        yield
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise CellTimedOut()

    def stop(signum, frame):
        raise CellTimedOut()

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, remaining)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _student_exception(message: dict) -> BaseException:
    kind = FORWARDED_ERRORS.get(message.get("type", ""))
    text = message.get("message", "")
    error = StudentError(f"{message.get('type', 'Error')}: {text}") if kind is None else kind(text)
    error.student_traceback = str(message.get("traceback", ""))
    return error


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
    if (previous.get("output_type") == "display_data" and previous.get("metadata", {}).get(HIDDEN_OUTPUT) == name):
        previous["data"]["text/plain"] += text
    else:
        outputs.append(nbformat.v4.new_output("display_data", data={"text/plain": text},
                                              metadata={HIDDEN_OUTPUT: name}))
    if name == "stderr" and not any(output.get("output_type") == "stream" and output.get("name") == "stderr"
                                    and output.get("text") == HIDDEN_STDERR_NOTE for output in outputs):
        outputs.append(nbformat.v4.new_output("stream", name="stderr", text=HIDDEN_STDERR_NOTE))


class _CellStream:
    """sys.stdout/sys.stderr while a test cell runs here: its prints become the cell's outputs."""

    def __init__(self, executor: TrustedExecute, name: str):
        self.executor, self.name = executor, name

    def write(self, text: str) -> int:
        self.executor.pending_prints.append((self.name, str(text)))
        return len(text)

    def flush(self) -> None:
        pass


# ------------------------------------------------------------------------------ the namespace

class TrustedNamespace(dict):
    """A test cell's globals: its own names, the assignment's imports, then the notebook's names."""

    def __init__(self, channel: Channel):
        super().__init__(__name__="__main__", __builtins__=builtins)
        self.channel = channel

    def __missing__(self, name: str) -> Any:
        if name in BUILTIN_NAMES or name.startswith("__"):
            raise KeyError(name)
        try:
            return self.channel.request({"op": "global", "name": name})
        except NameError:
            raise KeyError(name) from None


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


# ------------------------------------------------------------------------------ the preprocessor

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
    """nbgrader's Execute, with the autograded test cells run in the grader (see the module)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", BoundedKernelManager)
        super().__init__(*args, **kwargs)

    source_root = Unicode("", help="the private course's source folder (the assignment's notebooks)").tag(
        config=True)
    # A cell stopped for flooding its output leaves a backlog of output messages: move on rather
    # than fail the notebook (test cells run here, so a lost output can never give points).
    raise_on_iopub_timeout = Bool(False).tag(config=True)
    output_limit_bytes = Integer(
        2 * 2**20, help="text a cell may print before it is stopped (the rest is dropped)").tag(config=True)
    held_out_seed = Integer(None, allow_none=True, help="seed of this run's held-out samples").tag(config=True)
    held_out_cache = Unicode("", help="the grader's cache holding this run's held-out samples").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_notebook(info["notebook"], info["assignment"])
            solutions = {cell.name for cell in notebook.solution_cells}
            sources = {cell.name: cell.source for cell in notebook.source_cells}
            self.test_sources = {cell.name: sources[cell.name] for cell in notebook.grade_cells
                                 if cell.cell_type == "code" and cell.name not in solutions}
            self.points = {cell.name: cell.max_score for cell in notebook.grade_cells}
        from mlhep.held_out import use_grading_samples

        use_grading_samples(self.held_out_seed, self.held_out_cache)
        self.channel = Channel(self)
        self.namespace = TrustedNamespace(self.channel)
        self.pending_prints: list[tuple[str, str]] = []
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
        if (cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)
                and grade_id in self.test_sources):
            self.run_test_cell(cell, self.test_sources[grade_id], self.points.get(grade_id, 0.0))
            return cell, resources
        return super().preprocess_cell(cell, resources, index)

    def run_test_cell(self, cell, source: str, points: float) -> None:
        """Run a test cell's source (from the gradebook) here, against the student's kernel.

        The statements from ``### BEGIN HIDDEN TESTS`` on run with the channel marking what the
        student's code prints as said during hidden tests, and an error of the student's code
        raised there is marked too: the feedback leaves both out (feedback.HideHiddenTests), since
        student code can print the hidden tests' inputs.
        """
        cell.outputs = []
        cell.execution_count = None
        self.pending_prints = []
        self.channel.hidden = False
        try:
            tree = ast.parse(source)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            hidden_line = next((number for number, line in enumerate(source.splitlines(), 1)
                                if line.strip() == HIDDEN_TESTS_MARK), None)
            visible = [node for node in tree.body if hidden_line is None or node.lineno < hidden_line]
            hidden = tree.body[len(visible):]
            with contextlib.redirect_stdout(_CellStream(self, "stdout")), \
                    contextlib.redirect_stderr(_CellStream(self, "stderr")), warnings.catch_warnings():
                self.channel.begin(cell.outputs, self._get_timeout(cell))
                try:
                    exec(compile(ast.Module(visible, type_ignores=[]), "<test cell>", "exec"), self.namespace)
                    self.flush_prints()
                    self.channel.hidden = bool(hidden) or (hidden_line is not None and last is not None
                                                           and last.lineno > hidden_line)
                    exec(compile(ast.Module(hidden, type_ignores=[]), "<test cell>", "exec"), self.namespace)
                    value = None
                    if last is not None:
                        value = eval(compile(ast.Expression(last.value), "<test cell>", "eval"), self.namespace)
                    self.flush_prints()
                    if value is not None:
                        cell.outputs.append(nbformat.v4.new_output(
                            "execute_result", data={"text/plain": repr(partial_score(value, points))},
                            execution_count=None))
                finally:
                    self.flush_prints()
                    self.channel.end()
        except CellTimedOut:
            self.flush_prints()
            cell.outputs.append(nbformat.v4.new_output(
                "error", ename="CellTimeoutError", evalue="",
                traceback=[f"CellTimeoutError: the cell ran past its time limit of {self.timeout} s"]))
        except Exception as error:  # noqa: BLE001 - a failed test scores 0, whatever failed
            self.flush_prints()
            student_traceback = getattr(error, "student_traceback", None)
            last_line = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            traceback = [STUDENT_TRACEBACK + student_traceback] if student_traceback else []
            if student_traceback is not None and self.channel.hidden:
                # The student's own words, raised in a hidden test, could repeat its inputs: the
                # error says only where it came from, and its text goes where the feedback drops it.
                cell.outputs.append(nbformat.v4.new_output(
                    "display_data", data={"text/plain": "\n".join([*traceback, last_line])},
                    metadata={HIDDEN_OUTPUT: "error"}))
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename=type(error).__name__, evalue=HIDDEN_ERROR_NOTE,
                    traceback=[f"{type(error).__name__}: {HIDDEN_ERROR_NOTE}"]))
            else:
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename=type(error).__name__, evalue=str(error), traceback=[*traceback, last_line]))
        finally:
            self.channel.hidden = False

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
                outs.append(nbformat.v4.new_output(
                    "error", ename="OutputLimitExceeded", evalue="",
                    traceback=[f"OutputLimitExceeded: the cell printed more than "
                               f"{self.output_limit_bytes / 2**20:g} MB and was stopped"]))
            return None
        return super().output(outs, msg, display_id, cell_index)
