"""The open-source FPGA path (mlhep/fpga.py) on a tiny QKeras MLP: QKeras == da4ml == Verilog, and Yosys."""

import os
import shutil

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
qkeras = pytest.importorskip("qkeras")
pytest.importorskip("da4ml")

from qkeras import QActivation, QDense, quantized_bits, quantized_relu  # noqa: E402

from mlhep import fpga  # noqa: E402


def _q(bits: int, integer: int, **kwargs) -> quantized_bits:
    return quantized_bits(bits, integer, alpha=1, **kwargs)


def _tiny_model(seed: int = 0, **kernel_kwargs):
    """6 -> 5 -> 2 with the same layer types as the lesson's encoder, half of the weights pruned."""
    tf.random.set_seed(seed)
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Input((6,)),
            QActivation(_q(8, 3), name="input_quantizer"),
            QDense(5, kernel_quantizer=_q(6, 0, **kernel_kwargs), bias_quantizer=_q(6, 0), name="dense_1"),
            QActivation(quantized_relu(6, 2), name="relu_1"),
            QDense(2, kernel_quantizer=_q(6, 0), bias_quantizer=_q(6, 0), name="mu"),
        ]
    )
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, QDense):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * (rng.random(kernel.shape) < 0.5), rng.uniform(-0.5, 0.5, bias.shape)])
    return model


def _numpy_reference(model, x: np.ndarray, rounding: str) -> np.ndarray:
    """The model's fixed-point arithmetic in float64 numpy (exact here), rounding ties as asked.

    ``half_even`` is QKeras's ``tf.round``; ``half_up`` is da4ml's native ``RND`` mode. Returns the
    outputs and the anomaly score sum(mu**2) as the last column."""

    def round_(v):
        return np.rint(v) if rounding == "half_even" else np.floor(v + 0.5)

    def bits(v, q):
        k, i, f, _ = fpga._bits_format(q, "reference")
        return np.clip(round_(v * 2.0**f), -k * 2.0 ** (i + f), 2.0 ** (i + f) - 1) * 2.0**-f

    def relu(v, q):
        _, i, f, _ = fpga._relu_format(q, "reference")
        return np.clip(round_(np.maximum(v, 0) * 2.0**f), 0, 2.0 ** (i + f) - 1) * 2.0**-f

    v = np.rint(x.astype(np.float64) * 2.0**4).clip(-128, 127) / 2.0**4  # the input grid, quantized_bits(8, 3)
    for layer in model.layers[1:]:
        if isinstance(layer, QDense):
            kernel = layer.kernel_quantizer_internal(layer.kernel).numpy().astype(np.float64)
            bias = layer.bias_quantizer_internal(layer.bias).numpy().astype(np.float64)
            v = v @ kernel + bias
        elif isinstance(layer.quantizer, quantized_relu):
            v = relu(v, layer.quantizer)
        else:
            v = bits(v, layer.quantizer)
    return np.concatenate([v, (v**2).sum(axis=1, keepdims=True)], axis=1)


@pytest.fixture(scope="module")
def tiny():
    model = _tiny_model()
    x = np.random.default_rng(1).normal(0, 3, (500, 6)).astype(np.float32)
    return model, x, fpga.trace_qkeras_mlp(model)


def test_emulation_is_qkeras_bit_for_bit(tiny):
    model, x, comb = tiny
    mu = model.predict(x, verbose=0).astype(np.float64)
    qkeras_out = np.concatenate([mu, (mu**2).sum(axis=1, keepdims=True)], axis=1)
    np.testing.assert_array_equal(fpga.emulate(comb, x), qkeras_out)
    np.testing.assert_array_equal(fpga.emulate(comb, x), _numpy_reference(model, x, "half_even"))


def test_half_up_rounding_differs_only_at_exact_ties(tiny):
    """da4ml's native rounding sends a value exactly half-way between two grid points up, QKeras's
    tf.round to the even neighbour. So the cheaper ``half_up`` hardware is exactly a half-up version
    of the model, and differs from QKeras only in rows where some pre-activation is such a tie."""
    model, x, _ = tiny
    emulated = fpga.emulate(fpga.trace_qkeras_mlp(model, rounding="half_up"), x)
    np.testing.assert_array_equal(emulated, _numpy_reference(model, x, "half_up"))

    # Rows with a tie in the hidden layer: there the two roundings may disagree, nowhere else.
    pre = np.rint(x.astype(np.float64) * 16).clip(-128, 127) / 16
    dense = model.get_layer("dense_1")
    kernel = dense.kernel_quantizer_internal(dense.kernel).numpy().astype(np.float64)
    pre = pre @ kernel + dense.bias_quantizer_internal(dense.bias).numpy().astype(np.float64)
    ties = ((pre * 2**4) % 1 == 0.5).any(axis=1)  # quantized_relu(6, 2): 4 fraction bits
    differ = (emulated != _numpy_reference(model, x, "half_even")).any(axis=1)
    assert differ.any() and ties.any(), "the sample should contain ties, or this test tests nothing"
    assert not (differ & ~ties).any()


# `bash run.sh setup` installs Icarus Verilog where it can (as root); CI must have it, a laptop may not.
@pytest.mark.skipif(
    shutil.which("iverilog") is None and not os.environ.get("CI"),
    reason="Icarus Verilog is not installed (apt install iverilog)",
)
def test_verilog_simulation_is_emulation_bit_for_bit(tiny, tmp_path):
    _, x, comb = tiny
    directory = fpga.write_verilog(comb, tmp_path / "tiny", clock_period_ns=4.0, latency_cutoff=3)
    info = fpga.design_info(directory)
    assert info["latency_cycles"] == info["n_stages"] + 1 >= 2
    assert info["latency_ns"] == info["latency_cycles"] * 4.0
    np.testing.assert_array_equal(fpga.simulate_verilog(directory, x), fpga.emulate(comb, x))


def test_missing_simulator_is_named(tiny, tmp_path, monkeypatch):
    _, x, comb = tiny
    directory = fpga.write_verilog(comb, tmp_path / "tiny")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="iverilog"):
        fpga.simulate_verilog(directory, x)


@pytest.mark.perf  # Yosys in WebAssembly: ~5 s, but ~30 s the first time (it compiles itself)
def test_synthesis_counts_cells_and_caches(tiny, tmp_path):
    _, _, comb = tiny
    directory = fpga.write_verilog(comb, tmp_path / "tiny")
    result = fpga.synthesize(directory, cache_dir=tmp_path / "cache")
    assert result["LUT"] > 0 and result["FF"] > 0 and not result["cached"]
    assert fpga.resource_estimate(comb) > 0
    again = fpga.synthesize(directory, cache_dir=tmp_path / "cache")
    assert again["cached"] and again["LUT"] == result["LUT"]
    # A changed Verilog file is a new cache key: never a stale result.
    top = directory / "src" / "axol1tl.v"
    top.write_text(top.read_text() + "\n// edited\n")
    assert not fpga.synthesize(directory, cache_dir=tmp_path / "cache")["cached"]


def test_yosys_text_stat_is_parsed():
    old = "   Number of cells:                 10\n     CARRY4         2\n     LUT2  3\n     LUT6  5\n"
    new = "        10 cells\n   Number of cells  10\n         2   CARRY4\n         3   LUT2\n         5   LUT6\n"
    for text in (old, new):
        assert fpga.parse_yosys_stat(text) == {"CARRY4": 2, "LUT2": 3, "LUT6": 5}
    assert fpga._summary({"LUT2": 3, "LUT6": 5, "FDRE": 4, "CARRY4": 2})["LUT"] == 8


@pytest.mark.parametrize(
    ("bad_layer", "message"),
    [
        (lambda: tf.keras.layers.BatchNormalization(name="bn"), "unsupported layer"),
        (lambda: tf.keras.layers.Dense(2, name="float_dense"), "unsupported layer"),
        (lambda: QActivation("relu", name="float_relu"), "unsupported activation"),
        (
            lambda: QDense(2, kernel_quantizer=quantized_bits(6, 0, alpha="auto_po2"), bias_quantizer=_q(6, 0)),
            "alpha",
        ),
    ],
)
def test_unsupported_layers_raise_value_error(bad_layer, message):
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Input((6,)),
            QActivation(_q(8, 3)),
            QDense(4, kernel_quantizer=_q(6, 0), bias_quantizer=_q(6, 0)),
            bad_layer(),
        ]
    )
    with pytest.raises(ValueError, match=message):
        fpga.trace_qkeras_mlp(model)


def test_missing_input_quantizer_raises_value_error():
    model = tf.keras.Sequential([tf.keras.layers.Input((6,)), QDense(2, kernel_quantizer=_q(6, 0))])
    with pytest.raises(ValueError, match="first layer must be QActivation"):
        fpga.trace_qkeras_mlp(model)


def test_widest_value_bits_flags_designs_past_the_emulators_64_bits(tiny):
    _, _, comb = tiny
    assert 8 <= fpga.widest_value_bits(comb) <= 32
    chain = tf.keras.Sequential(
        [tf.keras.layers.Input((6,)), QActivation(_q(14, 7))]
        + [QDense(1, kernel_quantizer=_q(16, 15), bias_quantizer=_q(16, 15)) for _ in range(5)]
    )
    for layer in chain.layers[1:]:  # weights of 32 767: each dense layer adds 15 bits
        kernel, bias = layer.get_weights()
        layer.set_weights([np.full_like(kernel, 32767.0), bias])
    assert fpga.widest_value_bits(fpga.trace_qkeras_mlp(chain)) > 64
