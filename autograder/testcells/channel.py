"""The grader's end of the conversation with the agent in a student's kernel (autograder.kernel.agent).

A test cell talks to the kernel through one :class:`Channel`, made of pieces with one job each:

* :class:`References`: what crosses the wire by reference, both ways;
* :class:`CellStreams`: what the student's code prints meanwhile, into the cell's outputs, within
  the output limit;
* :class:`AgentCall`: the agent's run in the kernel (``serve``, executed for the cell), the
  messages over the kernel's stdin channel, the cell's deadline, and the end of the run;
* :func:`answer_callback`: the kernel's requests on the grader's objects, under the deadline.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jupyter_core.utils import run_sync

from ..kernel import wire
from .outputs import add_stream
from .proxies import CellTimedOut, ChannelError, StudentObject, student_exception

if TYPE_CHECKING:
    from .execute import TrustedExecute

#: The kernel-side call that answers a test cell's requests (see autograder.kernel.agent).
SERVE_CODE = '__import__("autograder.kernel.agent", fromlist=["serve"]).serve(globals())'


class References:
    """Objects that cross the wire by reference: the grader's, handed to student code (the kernel may
    only call them or read their public attributes), and the student's, which arrive as proxies."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.given: dict[int, Any] = {}

    def reference(self, value: Any) -> dict:
        self.given[id(value)] = value
        return {"callback": id(value), "type": type(value).__name__}

    def resolve(self, data: dict) -> Any:
        if "ref" in data:
            if type(data["ref"]) is not int:
                raise wire.WireError("bad reference")
            return StudentObject(self.channel, data["ref"], str(data.get("type", "object"))[:100])
        try:
            return self.given[data["callback"]]
        except (KeyError, TypeError):
            raise wire.WireError("reference to an object the grader never gave out") from None


class CellStreams:
    """What the student's code prints during one test cell: into the cell's outputs, up to ``limit``
    characters (then ``stop_flood`` is called once and the rest dropped), marked while hidden tests run."""

    def __init__(self, limit: int, stop_flood: Callable[[], None]):
        self.limit, self.stop_flood = limit, stop_flood
        self.outputs: list = []
        self.size = 0
        self.hidden = False

    def begin(self, outputs: list) -> None:
        self.outputs, self.size = outputs, 0

    def add(self, name: str, text: str) -> None:
        if self.size > self.limit:
            return
        self.size += len(text)
        if self.size > self.limit:
            text = text[: max(0, self.limit - (self.size - len(text)))] + "\n[output truncated]\n"
            self.stop_flood()
        add_stream(self.outputs, "stderr" if name == "stderr" else "stdout", text, hidden=self.hidden)


class AgentCall:
    """The agent's run in the kernel for one test cell, and the messages it carries."""

    def __init__(self, executor: TrustedExecute, streams: CellStreams, references: References):
        self.executor, self.streams, self.references = executor, streams, references
        self.msg_id: str | None = None  # the execute request that runs the agent
        self.done = False  # the kernel has finished running it
        self.deadline: float | None = None
        self.broken: str | None = None  # why the kernel can take no further cell

    @property
    def running(self) -> bool:
        return self.msg_id is not None and not self.done

    def start(self, deadline: float | None) -> None:
        if self.broken:
            raise ChannelError(self.broken)
        self.deadline = deadline
        self.msg_id = self.executor.kc.execute(
            SERVE_CODE, silent=False, store_history=False, allow_stdin=True, stop_on_error=False
        )
        self.done = False
        if self.receive().get("op") != "ready":
            self.fail("the notebook's kernel did not start the grader's agent")

    def finish(self) -> None:
        """Tell the agent the cell is over and collect its last output."""
        if self.msg_id is None:
            return
        try:
            if not self.done and not self.broken:
                self.send({"op": "done"})
            self.wait(grace=10)
        finally:
            self.msg_id = None

    def send(self, message: dict) -> None:
        self.executor.kc.input(wire.dumps(message, self.references.reference))

    def receive(self) -> dict:
        """The kernel's next message (an input request of the agent), within the cell's deadline."""
        kc = self.executor.kc
        while True:
            self.read_replies()
            if self.done:
                self.fail(
                    "the notebook's kernel stopped answering the grader (the grader's agent was ended "
                    "or replaced by the notebook's code)"
                )
            remaining = None if self.deadline is None else self.deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self.stop_at_deadline()
            try:
                msg = run_sync(kc.get_stdin_msg)(timeout=0.2 if remaining is None else min(0.2, remaining))
            except queue.Empty:
                if not run_sync(self.executor.km.is_alive)():
                    self.fail("the notebook's kernel died")
                continue
            if msg["msg_type"] != "input_request" or msg["parent_header"].get("msg_id") != self.msg_id:
                continue
            try:
                return wire.loads(msg["content"].get("prompt", ""), self.references.resolve)
            except wire.WireError as error:
                self.fail(f"the notebook's kernel sent the grader something invalid ({error})")

    def read_replies(self) -> None:
        """What the kernel said meanwhile about the agent's run: printed text (to the cell's outputs;
        results, errors and displays it might send are dropped, the grader writes those) and its end."""
        for msg in self._waiting(self.executor.kc.get_iopub_msg):
            if msg["msg_type"] == "stream":
                self.streams.add(msg["content"].get("name", "stdout"), str(msg["content"].get("text", "")))
        for msg in self._waiting(self.executor.kc.get_shell_msg):
            if msg["msg_type"] == "execute_reply":
                self.done = True

    def _waiting(self, get_message):
        """The messages already waiting on one of the kernel's channels that answer the agent's run."""
        while True:
            try:
                msg = run_sync(get_message)(timeout=0)
            except queue.Empty:
                return
            if msg["parent_header"].get("msg_id") == self.msg_id:
                yield msg

    def interrupt(self) -> None:
        run_sync(self.executor.km.interrupt_kernel)()

    def wait(self, grace: float) -> None:
        """Wait (at most ``grace`` s) for the kernel to end the agent's run; interrupt it if needed."""
        end = time.monotonic() + grace
        interrupted = False
        while not self.done:
            self.read_replies()
            if self.done:
                break
            if time.monotonic() > end:
                if interrupted:
                    self.broken = "the notebook's kernel stopped responding"
                    return
                self.interrupt()
                interrupted, end = True, time.monotonic() + grace
            if not run_sync(self.executor.km.is_alive)():
                self.broken = "the notebook's kernel died"
                return
            time.sleep(0.01)
        self.read_replies()

    def stop_at_deadline(self) -> None:
        self.interrupt()
        self.wait(grace=5)
        raise CellTimedOut()

    def fail(self, why: str) -> None:
        if not self.done:
            # The agent waits for an answer to what it sent: end its call instead of leaving it
            # waiting (ipykernel drops a stale answer if it was not waiting after all).
            with contextlib.suppress(Exception):
                self.send({"op": "done"})
        self.wait(grace=5)
        if not self.broken and "died" in why:
            self.broken = why
        raise ChannelError(why)


class Channel:
    """A test cell's line to the student's kernel: ``begin``, any number of ``request``, ``end``."""

    def __init__(self, executor: TrustedExecute):
        self.executor = executor
        self.references = References(self)
        self.streams = CellStreams(executor.output_limit_bytes, self._stop_flood)
        self.call = AgentCall(executor, self.streams, self.references)

    @property
    def outputs(self) -> list:
        return self.streams.outputs

    @property
    def hidden(self) -> bool:
        return self.streams.hidden

    @hidden.setter
    def hidden(self, value: bool) -> None:
        self.streams.hidden = value

    def begin(self, outputs: list, timeout: float | None) -> None:
        self.references.given.clear()  # the grader's objects of an earlier cell: no longer the kernel's
        self.streams.begin(outputs)
        self.call.start(None if timeout is None else time.monotonic() + timeout)

    def end(self) -> None:
        self.call.finish()

    def request(self, message: dict) -> Any:
        """Ask the kernel; its answer as plain data or StudentObject (errors are raised here)."""
        self.executor.flush_prints()
        self.call.send(message)
        while True:
            incoming = self.call.receive()
            op = incoming["op"]
            if op == "result":
                return incoming.get("value")
            if op == "error":
                raise student_exception(incoming)
            if op in ("call", "getattr"):
                self.call.send(answer_callback(self.references.given, incoming, self.call.deadline))
                continue
            self.call.fail(f"unexpected message {op!r} from the notebook's kernel")

    def _stop_flood(self) -> None:
        if self.call.running:
            self.call.interrupt()  # the call the flood comes from ends in an error


def answer_callback(given: dict[int, Any], request: dict, deadline: float | None) -> dict:
    """Carry out the kernel's request on one of the grader's objects (calls and public attributes only).

    The work is the student's asking but runs here, so it runs under the cell's deadline
    (:func:`deadline_alarm`) and, like all of the grader's work, on one thread (TrustedExecute).
    """
    with deadline_alarm(deadline):
        try:
            target = given[request["target"]]
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


@contextlib.contextmanager
def deadline_alarm(deadline: float | None):
    """Raise CellTimedOut in this (the main) thread when ``deadline`` (time.monotonic) passes.

    The grader's objects run the student's requests in the grader (a classifier factory the
    kernel calls in a loop, say): a SIGALRM timer ends that work at the cell's deadline even
    when the kernel never asks again. Outside the main thread, where no signal can be handled,
    the deadline is checked between the kernel's requests only.
    """
    if (
        deadline is None
        or threading.current_thread() is not threading.main_thread()
        or signal.getitimer(signal.ITIMER_REAL)[0] > 0
    ):  # not here, or armed by an outer call
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
