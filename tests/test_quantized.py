"""Networks as plain data, checked hls4ml configurations (mlhep/quantized.py); trigger inputs."""

import numpy as np
import pytest

pytest.importorskip("qkeras")

from mlhep.quantized import (  # noqa: E402
    MAX_WEIGHT_BITS,
    build_network,
    checked_hls_config,
    describe_network,
    example_network,
    weight_bits,
)
from mlhep.trigger import N_INPUTS, scalar_ht, trigger_inputs  # noqa: E402

LAYERS = ["features", "hidden", "hidden_linear", "hidden_relu", "output", "output_linear"]


def _description(units=(4, 2), bits=4, n_inputs=6):
    rng = np.random.default_rng(0)
    description, width = [{"kind": "input", "bits": 10, "integer": 4}], n_inputs
    for position, n in enumerate(units):
        description.append(
            {
                "kind": "dense",
                "kernel": rng.uniform(-1, 1, (width, n)),
                "bias": rng.uniform(-1, 1, n),
                "bits": bits,
                "integer": 0,
            }
        )
        if position < len(units) - 1:
            description.append({"kind": "relu", "bits": bits, "integer": 2})
        width = n
    return description


def test_description_round_trip_gives_the_same_network():
    model = build_network(_description(), 6)
    again = build_network(describe_network(model), 6)
    x = np.random.default_rng(1).normal(size=(200, 6)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop(0), "first layer must be the input quantizer"),
        (lambda d: d[1].update(kernel=np.ones((5, 4))), "kernel must have shape"),
        (lambda d: d[1].update(bias=np.full(4, np.nan)), "finite"),
        (lambda d: d[1].update(bits=40), "bits"),
        (lambda d: d[1].update(bits=True), "bits must be an integer"),
        (lambda d: d[1].update(integer=-3), "integer must be an integer"),
        (lambda d: d[1].update(kernel=np.full((6, 4), "1")), "numeric array"),
        (lambda d: d.append({"kind": "relu", "bits": 4, "integer": 2}), "end with a dense layer"),
        (lambda d: d.insert(1, {"kind": "lambda", "code": "import os"}), "kind"),
    ],
)
def test_a_malformed_description_is_refused(change, message):
    description = _description()
    change(description)
    with pytest.raises(ValueError, match=message):
        build_network(description, 6)


def test_a_network_too_large_to_trace_is_refused_before_it_is_built():
    wide = _description(units=(64, 64, 64, 3), bits=16, n_inputs=N_INPUTS)
    assert weight_bits(wide) > MAX_WEIGHT_BITS
    with pytest.raises(ValueError, match="weight bits"):
        build_network(wide, N_INPUTS)


def test_weights_are_put_on_their_grid_before_counting_and_building():
    description = _description()
    description[1]["kernel"] = np.full((6, 4), 0.01)  # below half a step of a 4-bit weight (1/8): all zero
    description[3]["kernel"] = np.full((4, 2), 1e300)  # saturates instead of becoming inf in float32
    assert weight_bits(description) == 8 * 4
    model = build_network(description, 6)
    assert not np.any(model.layers[1].get_weights()[0]) and np.isfinite(model.layers[3].get_weights()[0]).all()


def test_the_input_format_and_the_quantizers_between_dense_layers_are_required():
    description = _description()
    with pytest.raises(ValueError, match="quantized_bits"):
        build_network(description, 6, input_format=(14, 7))
    description.pop(2)  # the relu between the two dense layers
    with pytest.raises(ValueError, match="relu quantizer must come between"):
        build_network(description, 6)


def test_checked_config_keeps_a_valid_configuration():
    config = {
        "Model": {
            "Precision": {"default": "fixed<16,6>"},
            "ReuseFactor": 1,
            "Strategy": "Latency",
            "BitExact": None,
        },
        "LayerName": {
            "features": {"Precision": {"result": "fixed<16,8>"}, "Trace": False},
            "hidden_relu": {"Precision": {"result": "ufixed<6,2,RND_CONV,SAT,0>"}},
        },
    }
    assert checked_hls_config(config, LAYERS) == config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"LayerName": {"features": {"Precision": {"result": 'fixed<16,8>; system("x")'}}}}, "not a precision"),
        ({"LayerName": {"features": {"Precision": {"result": "fixed<16,8>\n#include <x>"}}}}, "not a precision"),
        ({"LayerName": {"features": {"Precision": {"result; x": "fixed<16,8>"}}}}, "unknown precision variables"),
        ({"LayerName": {"features": {"Precision": {"result": "fixed<\u0661\u0666,8>"}}}}, "not a precision"),
        ({"LayerName": {"features": {"Precision": {"result": "fixed<99,-99,RND,SAT,99>"}}}}, "need fixed<W,I>"),
        ({"LayerName": {"features": {"Precision": {"result": "int<0>"}}}}, "int<W>"),
        ({"LayerName": {"features": {"Precision": {"result": "fixed<16,6,ROUND,SAT>"}}}}, "rounding in"),
        ({"LayerName": {"features": {"Precision": {"result": {"a": "fixed<16,8>"}}}}}, "not a precision"),
        ({"LayerName": {"nowhere": {"Precision": "fixed<16,8>"}}}, "unknown layers"),
        ({"LayerName": {"features": {"Template": "int main(){}"}}}, "unknown key"),
        ({"Model": {"ReuseFactor": 10**12}}, "integer from 1"),
        ({"Model": {"Strategy": "Latency; x"}}, "Latency"),
        ({"OutputDir": "/etc"}, "keys 'Model' and 'LayerName'"),
        ("fixed<16,8>", "keys 'Model' and 'LayerName'"),
    ],
)
def test_checked_config_refuses_anything_else(config, message):
    with pytest.raises(ValueError, match=message):
        checked_hls_config(config, LAYERS)


def test_checked_config_writes_precisions_again_from_their_parts():
    config = {"LayerName": {"features": {"Precision": {"result": " fixed< 16 , 8 ,RND_CONV, SAT > "}}}}
    assert checked_hls_config(config, LAYERS)["LayerName"]["features"]["Precision"]["result"] == (
        "fixed<16,8,RND_CONV,SAT>"
    )


def test_example_network_is_the_same_everywhere():
    first, second = example_network(), example_network()
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    kernel = first.get_layer("hidden").get_weights()[0]
    np.testing.assert_array_equal(kernel * 32, np.round(kernel * 32))  # on the 6-bit grid: steps of 1/32


def test_trigger_inputs_rotate_phi_and_keep_padding_at_zero():
    objects = np.zeros((1, 19, 3))
    objects[0, 9] = [250.0, 0.5, 3.0]  # leading jet
    objects[0, 10] = [120.0, -1.0, -3.0]  # second jet: delta phi = -6 -> wrapped to 2 pi - 6
    objects[0, 0] = [50.0, 0.0, 1.0]  # MET
    inputs = trigger_inputs(objects).reshape(19, 3)
    np.testing.assert_allclose(inputs[9], [2.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(inputs[10], [1.2, -1.0, 2 * np.pi - 6.0], atol=1e-6)
    np.testing.assert_allclose(inputs[0], [0.5, 0.0, 1.0 - 3.0], atol=1e-6)
    assert not inputs[1:9].any() and not inputs[11:].any(), "padded slots stay 0"
    assert scalar_ht(objects)[0] == 370.0, "H_T sums the jets only"
    with pytest.raises(ValueError, match="19, 3"):
        trigger_inputs(np.zeros((2, 10, 3)))
