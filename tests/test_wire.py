"""The grading channel's wire format (autograder.kernel.wire): plain data crosses, behaviour never does."""

from __future__ import annotations

import base64
import io
import json
import pickle

import numpy as np
import pytest

from autograder.kernel import wire
from data_fetch.dataset import Dataset


class Sneaky:
    """What a student might return: equal to anything, true, with the shape a test expects."""

    shape = (2,)

    def __eq__(self, other):
        return True

    def __bool__(self):
        return True


def no_references(value):
    raise AssertionError(f"plain data was sent as a reference: {value!r}")


def round_trip(value, reference=no_references, resolve=None):
    text = wire.dumps({"op": "result", "value": value}, reference)
    return wire.loads(text, resolve or (lambda data: pytest.fail(f"unexpected reference {data}")))["value"]


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        -(2**70),
        1.5,
        float("inf"),
        "text",
        b"\x00\xff",
        1 + 2j,
        [1, [2.0, "x"]],
        (1, (2,)),
        {"a": 1, 2: [3], (1, 2): None},
        slice(1, None, 2),
        np.float32(2.5),
        np.int64(7),
        np.bool_(True),
        np.arange(12, dtype=np.int16).reshape(3, 4),
        np.array(["a", "bc"]),
        np.zeros((0, 19, 3)),
        np.array([np.nan, 1.0]),
    ],
)
def test_plain_data_round_trips_with_its_type(value):
    copy = round_trip(value)
    assert type(copy) is type(value)
    if isinstance(value, np.ndarray):
        assert copy.dtype == value.dtype and copy.shape == value.shape
        np.testing.assert_array_equal(copy, value)
    else:
        assert copy == value or (isinstance(value, float) and np.isnan(value) and np.isnan(copy))


def test_nan_survives():
    assert np.isnan(round_trip(float("nan")))


def test_a_dataset_crosses_as_named_arrays():
    data = Dataset("cms_ad", "pythia", {"objects": np.ones((2, 19, 3)), "label": np.array([0, 1])})
    copy = round_trip(data)
    assert isinstance(copy, Dataset) and copy.source == "pythia"
    np.testing.assert_array_equal(copy["label"], [0, 1])


def test_objects_with_behaviour_cross_as_references():
    given = []
    reference = lambda value: given.append(value) or {"ref": 7, "type": type(value).__name__}  # noqa: E731
    resolved = []
    copy = round_trip([Sneaky(), 1], reference, lambda data: resolved.append(data) or "proxy")
    assert copy == ["proxy", 1] and isinstance(given[0], Sneaky) and resolved == [{"ref": 7, "type": "Sneaky"}]


def test_array_subclasses_arrive_as_plain_arrays():
    class Always(np.ndarray):
        def __eq__(self, other):
            return True

    copy = round_trip(np.arange(3).view(Always))
    assert type(copy) is np.ndarray and not (copy == 5).any()


def npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    "raw",
    [
        {"op": "result", "value": {"array": npy(np.array([Sneaky()], dtype=object), allow_pickle=True)}},
        {"op": "result", "value": {"pickle": base64.b64encode(pickle.dumps(Sneaky())).decode()}},
        {"op": "result", "value": {"float": "__import__('os')"}},
        {"op": "result", "value": {"dict": [[{"list": []}, 1]]}},
        {"op": "result", "value": {"slice": [1.5, None, None]}},
        {"op": "result", "value": {"scalar": npy(np.arange(3))}},
        {"op": "result", "value": {"dataset": ["x", "y", {"dict": [["a", 1]]}]}},
        {"op": "result", "value": ["a", "bare JSON list"]},
        {"op": 3},
        {"op": "result", "target": "0"},
        ["not", "an", "object"],
    ],
)
def test_anything_else_is_refused(raw):
    with pytest.raises(wire.WireError):
        wire.loads(json.dumps(raw), lambda data: "proxy")


def test_nesting_and_size_are_bounded():
    deep = {"list": []}
    for _ in range(200):
        deep = {"list": [deep]}
    with pytest.raises(wire.WireError, match="nested too deeply"):
        wire.loads(json.dumps({"op": "result", "value": deep}), lambda data: "proxy")
    with pytest.raises(wire.WireError, match="too large"):
        wire.loads(" " * (wire.MAX_MESSAGE + 1), lambda data: "proxy")


def test_many_small_values_are_refused_before_parsing():
    # The attack: a message of a few hundred MB of tiny JSON values cost the grader about 26 bytes
    # of memory per byte. Now the number of values is capped before anything is parsed.
    flood = '{"op":"result","value":{"list":[' + "0," * wire.MAX_VALUES + "0]}}"
    with pytest.raises(wire.WireError, match="values"):
        wire.loads(flood, lambda data: "proxy")


def test_the_largest_message_accepted_costs_bounded_memory():
    import tracemalloc

    most = '{"op":"result","value":{"list":[' + ",".join(["0.5"] * (wire.MAX_VALUES - 10)) + "]}}"
    tracemalloc.start()
    try:
        value = wire.loads(most, lambda data: "proxy")["value"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(value) == wire.MAX_VALUES - 10
    # Measured: 39 MB for a million floats; other kinds of value cost at most a few times that.
    assert peak < 300 * 2**20, f"decoding took {peak / 2**20:.0f} MB"


def test_the_graders_kernel_clients_refuse_messages_over_the_limit(tmp_path):
    # ZeroMQ drops a message over MAXMSGSIZE (and the connection) before any of it is kept.
    import zmq

    from autograder.testcells.execute import MAX_KERNEL_MESSAGE, BoundedKernelManager

    manager = BoundedKernelManager(
        transport="ipc", ip=str(tmp_path / "kernel"), connection_file=str(tmp_path / "kernel.json")
    )
    manager.write_connection_file()
    client = manager.client()
    try:
        for connect in (client.connect_shell, client.connect_iopub, client.connect_stdin, client.connect_control):
            socket = connect()  # the sockets the client's channels make, without their threads
            try:
                assert socket.getsockopt(zmq.MAXMSGSIZE) == MAX_KERNEL_MESSAGE
            finally:
                socket.close(linger=0)
    finally:
        client.context.destroy(linger=0)
        manager.cleanup_connection_file()
