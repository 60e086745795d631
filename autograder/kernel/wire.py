"""Plain data on the wire between the grader and a student's sandboxed kernel.

Both sides of the grading channel (:mod:`autograder.testcells` in the grader,
:mod:`autograder.kernel.agent` in the kernel) turn Python values into JSON text with
:func:`dumps` and back with :func:`loads`. Only *plain data* crosses as a value: ``None``,
``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, lists, tuples, dicts, slices,
numpy arrays and scalars of numeric, string or time types, and ``data_fetch.Dataset``. Anything
else crosses as a *reference* (``{"ref": n}``): the other side gets a proxy that can only ask
its owner to act on the object.

The decoder is what the grader's safety rests on: whatever text a student's kernel sends, it
builds exact built-in types, plain numpy arrays (``allow_pickle=False``) or proxies, never an
object whose behaviour the student wrote. So a student's ``__eq__`` can never run in the grader.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np

#: numpy dtype kinds that are plain data: bool, integers, floats, complex, strings, times.
PLAIN_KINDS = frozenset("biufcUSmM")
#: Deepest nesting of containers accepted (a deeper value is refused, not recursed into).
MAX_DEPTH = 64
#: Largest message accepted from the other side, in characters. The largest a course's test
#: sends is 2.4 MB (lesson 03's held-out observables, 40 000 events); a student's answer
#: (scores, weights, features) is smaller.
MAX_MESSAGE = 32 * 2**20
#: Most JSON values one message may hold. Parsing costs memory per value (a Python object each,
#: up to about 100 bytes), not per character: this bounds it whatever the text is, together with
#: MAX_MESSAGE at a few hundred MB. Arrays cross as one string each, not as values.
MAX_VALUES = 1_000_000


class WireError(ValueError):
    """A message that is not valid on the grading channel."""


def _npy(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    # (not np.ascontiguousarray: it turns a 0-d array, a numpy scalar, into a 1-d one)
    np.save(buffer, array if array.flags.c_contiguous else np.array(array, order="C"), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _from_npy(text: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:  # e.g. an object array, which needs pickle
        raise WireError(f"not a plain array: {error}") from None
    if type(array) is not np.ndarray or array.dtype.kind not in PLAIN_KINDS:
        raise WireError(f"not a plain array (dtype {array.dtype})")
    return array


def is_plain_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in PLAIN_KINDS and value.dtype.fields is None


def encode(value: Any, reference: Callable[[Any], dict], depth: int = 0) -> Any:
    """``value`` as JSON-able data; objects that are not plain data become ``reference(value)``."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if np.isfinite(value) else {"float": repr(value)}
    if kind in (list, tuple):
        return {kind.__name__: [encode(item, reference, depth + 1) for item in value]}
    if kind is dict:
        return {
            "dict": [
                [encode(key, reference, depth + 1), encode(item, reference, depth + 1)]
                for key, item in value.items()
            ]
        }
    if kind is complex:
        return {"complex": [repr(value.real), repr(value.imag)]}
    if kind is bytes:
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if kind is slice:
        return {"slice": [encode(part, reference, depth + 1) for part in (value.start, value.stop, value.step)]}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, np.generic) and np.dtype(kind).kind in PLAIN_KINDS:
        return {"scalar": _npy(np.asarray(value))}
    if is_plain_array(value):
        return {"array": _npy(value.view(np.ndarray) if kind is not np.ndarray else value)}
    if _is_dataset(value):
        return {"dataset": [value.name, value.source, encode(dict(value.arrays), reference, depth + 1)]}
    return reference(value)


def decode(data: Any, resolve: Callable[[dict], Any], depth: int = 0) -> Any:
    """The value that :func:`encode` wrote; ``resolve`` turns a reference back into an object."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is not dict or len(data) not in (1, 2):
        raise WireError(f"unexpected {type(data).__name__} on the wire")
    tag = next(iter(data))
    body = data[tag]
    if tag in ("ref", "callback"):
        return resolve(data)
    if tag == "float":
        if body not in ("nan", "inf", "-inf"):
            raise WireError(f"bad float {body!r}")
        return float(body)
    if tag in ("list", "tuple") and type(body) is list:
        items = [decode(item, resolve, depth + 1) for item in body]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and type(body) is list:
        result = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise WireError("bad dict entry")
            key = decode(pair[0], resolve, depth + 1)
            if type(key) not in (str, int, float, bool, tuple, bytes) and key is not None:
                raise WireError(f"a dict key must be plain data, not {type(key).__name__}")
            result[key] = decode(pair[1], resolve, depth + 1)
        return result
    if tag == "complex" and type(body) is list and len(body) == 2:
        return complex(float(body[0]), float(body[1]))
    if tag == "bytes" and type(body) is str:
        return base64.b64decode(body, validate=True)
    if tag == "slice" and type(body) is list and len(body) == 3:
        parts = [decode(part, resolve, depth + 1) for part in body]
        if any(part is not None and type(part) is not int for part in parts):
            raise WireError("slice bounds must be integers")
        return slice(*parts)
    if tag == "ellipsis":
        return Ellipsis
    if tag == "scalar" and type(body) is str:
        array = _from_npy(body)
        if array.ndim != 0:
            raise WireError("a scalar must be a 0-d array")
        return array[()]
    if tag == "array" and type(body) is str:
        return _from_npy(body)
    if tag == "dataset" and type(body) is list and len(body) == 3:
        from data_fetch.dataset import Dataset

        name, source, arrays = body[0], body[1], decode(body[2], resolve, depth + 1)
        if type(name) is not str or type(source) is not str or type(arrays) is not dict:
            raise WireError("bad dataset")
        if not all(type(key) is str and type(array) is np.ndarray for key, array in arrays.items()):
            raise WireError("a dataset holds named arrays only")
        return Dataset(name, source, arrays)
    raise WireError(f"unknown tag {tag!r} on the wire")


def dumps(message: dict, reference: Callable[[Any], dict]) -> str:
    """One message as JSON text: ``{"op": ..., ...}`` with every value encoded."""
    return json.dumps(
        {
            key: (
                value
                if key in ("op", "target", "name", "type", "message", "traceback")
                else encode(value, reference)
            )
            for key, value in message.items()
        },
        separators=(",", ":"),
    )


def loads(text: str, resolve: Callable[[dict], Any]) -> dict:
    """The message that :func:`dumps` wrote, with its values decoded; WireError if malformed."""
    if type(text) is not str or len(text) > MAX_MESSAGE:
        raise WireError(f"message too large (more than {MAX_MESSAGE // 2**20} MB) or not text")
    # Every JSON value but the first follows a ',' or opens with '[' or '{' (an upper bound, counted
    # in C before anything is parsed).
    if text.count(",") + text.count("[") + text.count("{") >= MAX_VALUES:
        raise WireError(f"message with more than {MAX_VALUES} values (send numbers as a numpy array)")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise WireError(f"not JSON: {error}") from None
    if type(raw) is not dict or type(raw.get("op")) is not str:
        raise WireError("a message is an object with an 'op'")
    message: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("op", "name", "type", "message", "traceback"):
            if type(value) is not str:
                raise WireError(f"{key} must be text")
            message[key] = value
        elif key == "target":
            if type(value) is not int:
                raise WireError("target must be an integer")
            message[key] = value
        else:
            try:
                message[key] = decode(value, resolve)
            except RecursionError:
                raise WireError("value nested too deeply") from None
    return message


def _is_dataset(value: Any) -> bool:
    kind = type(value)
    return kind.__name__ == "Dataset" and kind.__module__ == "data_fetch.dataset"
