"""The grader's agent in a student's kernel: it answers the test cells' questions.

When the grader reaches a test cell, it runs that cell's code itself (:mod:`autograder.testcells`)
and executes only ``serve(globals())`` in the student's kernel. ``serve`` then answers the
grader's requests, one message at a time, through the kernel's stdin channel (each ``input()``
sends a reply and returns the next request): look up a name in the notebook, get an attribute,
call a function, index, iterate, convert to an array. Values go back as plain data
(:mod:`autograder.kernel.wire`); every other object stays here and the grader gets a reference to it.

Objects of the grader that the test passes in (a classifier factory, say) arrive as
:class:`GraderObject` proxies: calling one, or one of its public methods, asks the grader.

Nothing here is trusted: student code can patch this module like any other. That can only
change the answers it gets back, which are data, never how the grader judges them.
"""

from __future__ import annotations

import builtins
import traceback
from typing import Any

import numpy as np

from . import wire


class GraderObject:
    """A proxy for an object of the grader (for example a classifier factory given by a test)."""

    __slots__ = ("_id", "_type")

    def __init__(self, object_id: int, type_name: str):
        object.__setattr__(self, "_id", object_id)
        object.__setattr__(self, "_type", type_name)

    def __call__(self, *args, **kwargs):
        return _agent.ask({"op": "call", "target": self._id, "args": list(args), "kwargs": kwargs})

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return _agent.ask({"op": "getattr", "target": self._id, "name": name})

    def __repr__(self) -> str:
        return f"<grader's {self._type}>"


class GradingStopped(BaseException):
    """The grader ended the conversation (its test cell is over) while student code ran."""


class Agent:
    """The kernel's side of the channel; one per kernel, so references live across test cells."""

    def __init__(self):
        self.objects: dict[int, Any] = {}
        self.user_ns: dict = {}

    def reference(self, value: Any) -> dict:
        self.objects[id(value)] = value
        return {"ref": id(value), "type": type(value).__name__}

    def resolve(self, data: dict) -> Any:
        if "ref" in data:
            return self.objects[data["ref"]]
        return GraderObject(data["callback"], str(data.get("type", "object")))

    def send(self, message: dict) -> dict:
        """Send one message and return the grader's next one."""
        try:
            text = wire.dumps(message, self.reference)
        except (wire.WireError, RecursionError) as error:  # e.g. a value nested too deeply
            text = wire.dumps(
                {"op": "error", "type": "ValueError", "message": str(error), "traceback": ""}, self.reference
            )
        return wire.loads(builtins.input(text), self.resolve)

    def ask(self, request: dict) -> Any:
        """A request to the grader; its answer, serving the grader's own requests meanwhile."""
        message = request
        while True:
            incoming = self.send(message)
            if incoming["op"] == "result":
                return incoming.get("value")
            if incoming["op"] == "error":
                raise _exception(incoming)
            if incoming["op"] == "done":
                raise GradingStopped()
            message = self.handle(incoming)

    def serve(self, user_ns: dict) -> None:
        self.user_ns = user_ns
        message = {"op": "ready"}
        while True:
            incoming = self.send(message)
            if incoming["op"] == "done":
                return
            message = self.handle(incoming)

    def handle(self, request: dict) -> dict:
        """Carry out one request of the grader; the reply to send."""
        try:
            value = self.carry_out(request)
        except GradingStopped:
            raise
        except BaseException as error:  # noqa: BLE001 - every failure of student code is reported
            return {
                "op": "error",
                "type": type(error).__name__,
                "message": str(error)[:2000],
                "traceback": _student_traceback(error),
            }
        return {"op": "result", "value": value}

    def carry_out(self, request: dict) -> Any:
        op = request["op"]
        if op == "global":
            try:
                return self.user_ns[request["name"]]
            except KeyError:
                raise NameError(f"name {request['name']!r} is not defined in the notebook") from None
        target = self.objects[request["target"]]
        if op == "getattr":
            return getattr(target, request["name"])
        if op == "call":
            return target(*request.get("args", []), **request.get("kwargs", {}))
        if op == "getitem":
            return target[request["key"]]
        if op == "len":
            return len(target)
        if op == "iter":
            return iter(target)
        if op == "next":
            return next(target)
        if op == "array":
            array = np.asarray(target)
            if not wire.is_plain_array(array):
                raise TypeError(f"a {type(target).__name__} does not convert to an array of numbers")
            return array
        if op == "str":
            return str(target)
        if op == "repr":
            return repr(target)
        raise ValueError(f"unknown request {op!r}")


def _student_traceback(error: BaseException) -> str:
    """The error's traceback from the student's code on (the agent's own frames left out)."""
    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next
    return "".join(traceback.format_exception(type(error), error, frames))[-6000:]


# Exceptions the grader may raise back into student code, by name; others become RuntimeError.
_BUILTIN_ERRORS = {
    name: getattr(builtins, name)
    for name in dir(builtins)
    if isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins, name), Exception)
}


def _exception(message: dict) -> Exception:
    kind = _BUILTIN_ERRORS.get(message.get("type", ""), RuntimeError)
    return kind(message.get("message", ""))


_agent = Agent()


def serve(user_ns: dict) -> None:
    """Answer the grader's requests about the notebook's namespace until it says it is done."""
    _agent.serve(user_ns)
