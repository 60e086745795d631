"""The student's objects seen from a test cell (autograder.testcells.proxies), without a kernel.

A test cell asks the kernel through ``Channel.request`` and gets plain data, a ``StudentObject``
or an exception. Here :class:`WireChannel` stands in for the channel: each request crosses the
real wire format (autograder.kernel.wire) to the kernel's real agent (autograder.kernel.agent,
serving a dict that stands for the notebook's names), and its answer comes back the same way, so
the proxies see exactly the messages a kernel would send. Nothing is started.
"""

from __future__ import annotations

import builtins
import contextlib

import numpy as np
import pytest

from autograder.kernel import wire
from autograder.kernel.agent import Agent
from autograder.testcells.proxies import (
    CellTimedOut,
    ChannelError,
    StudentError,
    StudentObject,
    TrustedNamespace,
    student_exception,
)


class WireChannel:
    """A channel to an agent in this process: what ``Channel.request`` does, minus the kernel."""

    def __init__(self, notebook: dict):
        self.agent = Agent()
        self.agent.user_ns = notebook
        self.requests: list[dict] = []  # what the proxies asked, for the tests that count requests
        self.given: dict[int, object] = {}  # the grader's objects handed to student code

    def request(self, message: dict):
        self.requests.append(message)
        incoming = wire.loads(wire.dumps(message, self._grader_reference), self.agent.resolve)
        reply = self.agent.handle(incoming)
        try:
            text = wire.dumps(reply, self.agent.reference)
        except wire.WireError as error:  # as the agent's send does
            text = wire.dumps(
                {"op": "error", "type": "ValueError", "message": str(error), "traceback": ""}, self.agent.reference
            )
        answer = wire.loads(text, self._resolve)
        if answer["op"] == "error":
            raise student_exception(answer)
        return answer.get("value")

    def ops(self) -> list[str]:
        return [message["op"] for message in self.requests]

    def _grader_reference(self, value) -> dict:
        self.given[id(value)] = value
        return {"callback": id(value), "type": type(value).__name__}

    def _resolve(self, data: dict) -> StudentObject:
        assert "ref" in data, f"the kernel referred to an object of the grader: {data}"
        return StudentObject(self, data["ref"], str(data.get("type", "object")))


def student_object(value) -> tuple[StudentObject, WireChannel]:
    """``value`` living in the notebook, as the grader sees it, and its channel."""
    channel = WireChannel({"value": value})
    proxy = channel.request({"op": "global", "name": "value"})
    assert isinstance(proxy, StudentObject), f"{value!r} crossed as plain data"
    channel.requests.clear()
    return proxy, channel


class Sneaky:
    """A student's result that converts to [1, 2, 3] but answers everything else for itself:
    every method records that it ran, and none may, for an object that converts to an array."""

    def __init__(self):
        self.ran: list[str] = []
        self.shape = (99,)

    def __array__(self, dtype=None, copy=None):
        return np.array([1, 2, 3])

    def sum(self, *args, **kwargs):
        self.ran.append("sum")
        return 1000

    def __len__(self):
        self.ran.append("__len__")
        return 42

    def __getitem__(self, key):
        self.ran.append("__getitem__")
        return "cheat"

    def __iter__(self):
        self.ran.append("__iter__")
        return iter(["cheat"])

    def __eq__(self, other):
        self.ran.append("__eq__")
        return True

    def __bool__(self):
        self.ran.append("__bool__")
        return True

    __hash__ = object.__hash__


class Model:
    """A student's model: no array conversion, so its own attributes and methods answer."""

    n_features = 3
    shape = "the model's own"

    def predict(self, x, scale=1.0):
        return np.asarray(x) * 2 * scale

    def __len__(self):
        return 5

    def __iter__(self):
        yield from ("layer_1", "layer_2")


# ------------------------------------------------------------------------------ arrays


def test_array_attributes_come_from_the_array_not_the_students_methods():
    sneaky = Sneaky()
    proxy, _ = student_object(sneaky)
    assert proxy.shape == (3,)
    assert proxy.sum() == 6
    assert len(proxy) == 3
    assert proxy[1] == 2
    assert list(proxy) == [1, 2, 3]
    assert sneaky.ran == []


def test_comparisons_and_truth_act_on_the_plain_array():
    sneaky = Sneaky()
    proxy, _ = student_object(sneaky)
    comparison = proxy == [9, 9, 9]
    assert type(comparison) is np.ndarray and not comparison.any()  # the student's __eq__ says True
    assert (proxy == np.array([1, 2, 3])).all()
    assert (proxy != [1, 0, 3]).tolist() == [False, True, False]
    assert (proxy < 2).tolist() == [True, False, False]
    assert (proxy == proxy).all()  # two proxies: both sides converted
    assert sneaky.ran == []
    with pytest.raises(ValueError, match="truth value of an array"):
        bool(proxy)  # numpy's rule for a 3-element array, not the student's __bool__


def test_arithmetic_acts_on_the_plain_array_from_either_side():
    proxy, _ = student_object(Sneaky())
    assert (proxy + 1).tolist() == [2, 3, 4]
    assert (10 - proxy).tolist() == [9, 8, 7]
    assert (-proxy).tolist() == [-1, -2, -3]
    assert (proxy @ proxy) == 14
    assert type(np.asarray(proxy)) is np.ndarray
    assert np.asarray(proxy, dtype=float).dtype == np.float64


def test_a_number_of_the_student_converts_like_one():
    class Score:
        def __array__(self, dtype=None, copy=None):
            return np.array(0.8125)

    proxy, _ = student_object(Score())
    assert float(proxy) == 0.8125
    assert f"{proxy:.2f}" == "0.81"
    assert bool(proxy) is True
    assert proxy > 0.5
    with pytest.raises(TypeError, match="not an integer"):
        [0, 1][proxy]  # a float is no index

    class Index:
        def __array__(self, dtype=None, copy=None):
            return np.array(1)

    index, _ = student_object(Index())
    assert ["a", "b"][index] == "b"
    assert int(index) == 1


def test_an_array_the_student_returns_arrives_as_a_plain_array():
    class Always(np.ndarray):
        def __eq__(self, other):
            return True

    def make():
        return np.arange(3).view(Always)

    function, _ = student_object(make)
    result = function()
    assert type(result) is np.ndarray and not (result == 5).any()


# ------------------------------------------------------------------------------ other objects


def test_an_object_without_an_array_answers_for_itself():
    proxy, channel = student_object(Model())
    assert proxy.n_features == 3
    assert proxy.shape == "the model's own"  # an array attribute's name, but there is no array to read
    channel.requests.clear()
    assert len(proxy) == 5
    assert channel.ops() == ["array", "len"]  # the array was asked for first, and refused
    assert list(proxy) == ["layer_1", "layer_2"]


def test_calling_a_student_function_returns_plain_data():
    def analyse(x, *, bins):
        return {
            "counts": np.histogram(x, bins=bins)[0],
            "mean": float(np.mean(x)),
            "labels": ["a", "b"],
            "pair": (1, 2.5),
        }

    proxy, _ = student_object(analyse)
    result = proxy(np.array([0.1, 0.4, 0.6, 0.9]), bins=2)
    assert type(result) is dict
    assert type(result["counts"]) is np.ndarray and result["counts"].tolist() == [2, 2]
    assert result["mean"] == 0.5 and result["labels"] == ["a", "b"] and result["pair"] == (1, 2.5)


def test_a_method_call_takes_its_arguments_across_the_wire():
    proxy, channel = student_object(Model())
    result = proxy.predict(np.array([1.0, 2.0]), scale=0.5)
    assert type(result) is np.ndarray and result.tolist() == [1.0, 2.0]
    assert channel.ops() == ["getattr", "call"]


def test_an_object_with_behaviour_stays_in_the_kernel():
    def train():
        return Model()

    function, _ = student_object(train)
    model = function()
    assert isinstance(model, StudentObject)
    assert repr(model) == "<student's Model>"
    assert str(model).startswith("<") and "Model object" in str(model)  # the kernel's str()


def test_indexing_with_a_name_asks_the_student_object():
    class Table:  # a dataframe-like result: columns by name, and an array of its own
        def __array__(self, dtype=None, copy=None):
            return np.zeros((2, 2))

        def __getitem__(self, key):
            return np.array([1.0, 2.0]) if key == "pt" else None

    proxy, _ = student_object(Table())
    assert proxy["pt"].tolist() == [1.0, 2.0]
    assert proxy[0].tolist() == [0.0, 0.0]  # a position: the array's row


def test_a_test_cannot_change_the_students_object():
    proxy, channel = student_object(Model())
    with pytest.raises(TypeError, match="does not change"):
        proxy.n_features = 10
    assert channel.requests == []


def test_special_names_are_not_asked_for():
    # Python and numpy probe for __array_interface__, __length_hint__ ...: never the student's.
    proxy, channel = student_object(Model())
    for name in ("__array_interface__", "__array_struct__", "__length_hint__", "__deepcopy__"):
        assert not hasattr(proxy, name), name
    assert channel.requests == []


def test_proxies_are_hashable_by_identity_in_the_kernel():
    model = Model()
    channel = WireChannel({"a": model, "b": model, "c": Model()})
    a, b, c = (channel.request({"op": "global", "name": name}) for name in "abc")
    assert hash(a) == hash(b) and hash(a) != hash(c)
    assert len(channel.requests) == 3  # hashing asked nothing


# ------------------------------------------------------------------------------ errors


def test_a_builtin_error_of_the_student_arrives_as_itself():
    def check(kind):
        raise ValueError(f"unknown object type {kind!r}")

    proxy, _ = student_object(check)
    with pytest.raises(ValueError, match="unknown object type 'tau'") as error:
        proxy("tau")
    assert "in check" in error.value.student_traceback  # where in the student's code
    assert 'raise ValueError(f"unknown object type' in error.value.student_traceback


def test_other_errors_of_the_student_arrive_as_student_error():
    class SlotError(Exception):
        pass

    def count(objects):
        raise SlotError("slot 19 is out of range")

    proxy, _ = student_object(count)
    with pytest.raises(StudentError, match="^SlotError: slot 19 is out of range$") as error:
        proxy(np.zeros((1, 19, 3)))
    assert not isinstance(error.value, SlotError)
    assert "SlotError" in error.value.student_traceback


@pytest.mark.parametrize("error", [SystemExit(0), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_what_would_stop_the_grader_arrives_as_student_error(error):
    # sys.exit() in the student's code must end the call, never the grader.
    def stop():
        raise error

    proxy, _ = student_object(stop)
    with pytest.raises(StudentError, match=f"^{type(error).__name__}: "):
        proxy()


def test_an_error_with_a_forwarded_name_is_the_builtin_not_the_students_class():
    class AssertionError(Exception):  # a student's class named like the builtin
        pass

    def fake():
        raise AssertionError("passed")

    proxy, _ = student_object(fake)
    with pytest.raises(builtins.AssertionError, match="passed") as error:
        proxy()
    assert type(error.value) is builtins.AssertionError


def test_student_exception_keeps_only_what_the_message_says():
    error = student_exception(
        {"op": "error", "type": "ZeroDivisionError", "message": "division by zero", "traceback": "In cell 4"}
    )
    assert type(error) is ZeroDivisionError and str(error) == "division by zero"
    assert error.student_traceback == "In cell 4"
    unknown = student_exception({"op": "error"})
    assert type(unknown) is StudentError and str(unknown) == "Error: " and unknown.student_traceback == ""


def test_an_object_that_does_not_convert_cannot_pass_a_truth_test():
    # bool() of a model would otherwise be the student's __bool__, or True by default.
    proxy, _ = student_object(Model())
    with pytest.raises(TypeError, match="does not convert to an array of numbers"):
        bool(proxy)
    assert (proxy == 3) is False  # no array: identity, like any two different objects


class BrokenChannel:
    """A channel whose kernel breaks (or whose cell runs out of time) when asked for an array."""

    def __init__(self, error: BaseException):
        self.error, self.requests = error, []

    def request(self, message):
        self.requests.append(message)
        raise self.error


@pytest.mark.parametrize(
    "error", [ChannelError("the notebook's kernel died"), CellTimedOut()], ids=["ChannelError", "CellTimedOut"]
)
def test_a_broken_kernel_is_not_taken_for_an_object_without_an_array(error):
    proxy = StudentObject(BrokenChannel(error), 7, "ndarray")
    for use in (lambda: proxy.shape, lambda: len(proxy), lambda: proxy[0], lambda: list(proxy)):
        with pytest.raises(type(error)):
            use()
    # The array was asked for, and nothing else: the error was not read as "no array, ask the object".
    assert {message["op"] for message in proxy._channel.requests} == {"array"}


def test_a_timeout_passes_through_a_tests_except_exception():
    proxy = StudentObject(BrokenChannel(CellTimedOut()), 7, "ndarray")
    with pytest.raises(CellTimedOut), contextlib.suppress(Exception):  # what a test might write
        proxy.sum()


# ------------------------------------------------------------------------------ the namespace


def test_names_come_from_the_test_first_then_the_notebook():
    channel = WireChannel({"np": "the student's np", "count_objects": lambda objects, kind: 2, "n_events": 100})
    namespace = TrustedNamespace(channel)
    namespace["np"] = np  # the assignment's imports, put in by the grader
    exec("result = count_objects(np.zeros((1, 19, 3)), 'jet') + n_events", namespace)
    assert namespace["result"] == 102
    assert [message["name"] for message in channel.requests if message["op"] == "global"] == [
        "count_objects",
        "n_events",
    ]


def test_builtins_are_never_the_notebooks():
    channel = WireChannel({"len": lambda value: 99, "print": lambda *args: None, "__builtins__": "patched"})
    namespace = TrustedNamespace(channel)
    exec("result = len([1, 2])", namespace)
    assert namespace["result"] == 2
    with pytest.raises(KeyError):
        namespace["__doc__"]  # noqa: B018 - special names are not looked up either
    assert channel.requests == []


def test_a_name_the_notebook_lacks_is_a_name_error_in_the_test():
    namespace = TrustedNamespace(WireChannel({}))
    with pytest.raises(NameError, match="count_objects"):
        exec("count_objects([], 'jet')", namespace)
    with pytest.raises(KeyError):
        namespace["count_objects"]  # noqa: B018 - a dict's KeyError, which exec turns into NameError


def test_plain_data_of_the_notebook_arrives_as_a_copy():
    events = np.ones((2, 3))
    namespace = TrustedNamespace(WireChannel({"events": events, "config": {"bins": [0, 1]}}))
    exec("events[0, 0] = 5\nconfig['bins'].append(2)", namespace)
    assert events[0, 0] == 1  # the notebook's array is untouched
    assert type(namespace["events"]) is np.ndarray
