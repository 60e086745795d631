"""The student's objects, seen from a test cell in the grader, and the test cell's namespace.

A value that is not plain data stays in the student's kernel; the grader holds a
:class:`StudentObject`, whose operators act on a plain-array copy made in the kernel, never on
the student's ``__eq__`` or ``__bool__``. A test cell's names resolve in :class:`TrustedNamespace`:
its own, then the assignment's imports (the grader's own modules), then the notebook's.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .channel import Channel

#: Builtin exceptions that student code may raise through a test (e.g. the ValueError a test
#: expects); any other error of student code arrives as StudentError.
FORWARDED_ERRORS = {
    name: getattr(builtins, name)
    for name in (
        "ArithmeticError",
        "AssertionError",
        "AttributeError",
        "EOFError",
        "FloatingPointError",
        "ImportError",
        "IndexError",
        "KeyError",
        "LookupError",
        "MemoryError",
        "ModuleNotFoundError",
        "NameError",
        "NotImplementedError",
        "OSError",
        "OverflowError",
        "RecursionError",
        "RuntimeError",
        "StopIteration",
        "TypeError",
        "UnicodeError",
        "ValueError",
        "ZeroDivisionError",
    )
}
BUILTIN_NAMES = frozenset(dir(builtins))
#: What a numpy array has (shape, dtype, sum, all, ...): on a student's object that converts to an
#: array, these come from that array.
ARRAY_ATTRIBUTES = frozenset(name for name in dir(np.ndarray) if not name.startswith("_"))


class StudentError(Exception):
    """An error raised by the student's code that is not a builtin exception."""


class CellTimedOut(BaseException):
    """The test cell ran past its time limit (a BaseException: a test's ``except`` must not eat it)."""


class ChannelError(Exception):
    """The kernel broke the conversation with the grader (died, stopped answering, sent garbage)."""


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

    def _as_array(self):
        """The object as a plain numpy array converted in the kernel; None if it does not convert
        (a model, a mapping). What such an array is, a test reads from the array, never from the
        student's own ``sum``, ``shape``, ``__len__`` or ``__getitem__``."""
        try:
            array = self.__array__()
        except (CellTimedOut, ChannelError):
            raise
        except Exception:  # noqa: BLE001 - not convertible: the object answers for itself
            return None
        return array if getattr(array, "ndim", 0) > 0 else None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in ARRAY_ATTRIBUTES and (array := self._as_array()) is not None:
            return getattr(array, name)
        return self._ask("getattr", name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("a test does not change the student's objects")

    def __call__(self, *args, **kwargs) -> Any:
        return self._ask("call", args=list(args), kwargs=kwargs)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str) or (array := self._as_array()) is None:  # a mapping's key, or no array
            return self._ask("getitem", key=key)
        return array[key]

    def __len__(self) -> int:
        if (array := self._as_array()) is not None:
            return len(array)
        length = self._ask("len")
        if type(length) is not int or length < 0:
            raise TypeError("len() of the student's object is not a non-negative integer")
        return length

    def __iter__(self):
        if (array := self._as_array()) is not None:
            yield from array
            return
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
        array = self.__array__()
        return array[()] if np.ndim(array) == 0 else array

    def __bool__(self) -> bool:
        return bool(self._plain())

    def __float__(self) -> float:
        return float(self._plain())

    def __int__(self) -> int:
        return int(self._plain())

    def __index__(self) -> int:
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


for _name in (
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "and_",
    "or_",
    "xor",
    "matmul",
):
    _dunder = _name.rstrip("_")
    setattr(StudentObject, f"__{_dunder}__", _operator(_name))
    if _name not in ("eq", "ne", "lt", "le", "gt", "ge"):
        setattr(StudentObject, f"__r{_dunder}__", _operator(_name, reflected=True))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(
        StudentObject,
        f"__{_name}__",
        (lambda op: lambda self: op(self._plain()))(getattr(__import__("operator"), _name)),
    )


def student_exception(message: dict) -> BaseException:
    """The exception a student's error reply stands for, carrying the student's traceback."""
    kind = FORWARDED_ERRORS.get(message.get("type", ""))
    text = message.get("message", "")
    error = StudentError(f"{message.get('type', 'Error')}: {text}") if kind is None else kind(text)
    # An attribute of the instance: builtin exceptions (ValueError, ...) declare none.
    error.student_traceback = str(message.get("traceback", ""))  # type: ignore[union-attr]
    return error


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
