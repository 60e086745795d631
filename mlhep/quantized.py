"""Small QKeras networks as plain data, and hls4ml configurations checked before use (lesson 06).

A network crosses from a student's notebook to the grader as a plain description (lists, numbers and
arrays, never a Keras object), and the grader rebuilds it here; an hls4ml configuration is checked against
a strict schema before hls4ml writes it into C++ that the grader compiles and loads.
"""

import re
from typing import Any

import numpy as np

# Limits of what the grader rebuilds: big enough for any sensible trigger network, small enough that
# tracing and estimating it stay within seconds.
MAX_DENSE_LAYERS = 5
MAX_UNITS = 64
MAX_BITS = 16
# Tracing a network into hardware (da4ml) takes time that grows with its weights' bits: nonzero weights x
# weight bits is 3 800 for the lecture's pruned 4-bit detector (under a second), 9 500 unpruned (0.6 s),
# 19 000 at 8 bits (6 s) and 38 000 at 16 bits (30 s). The grader builds networks of up to MAX_WEIGHT_BITS.
MAX_WEIGHT_BITS = 20_000

ROUNDING_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
# ASCII digits only ([0-9], not \\d, which admits any Unicode digit): the string is parsed, bounded and written
# again from its parts, so nothing of the student's text reaches hls4ml.
_PRECISION = re.compile(
    r"(?P<kind>u?fixed|u?int)<(?P<width>[0-9]{1,2})(,(?P<integer>-?[0-9]{1,2}))?"
    r"(,(?P<rounding>[A-Z_]+))?(,(?P<overflow>[A-Z_]+))?(,(?P<saturation_bits>[0-9]{1,2}))?>"
)
MAX_PRECISION_BITS = 64
# The variables a layer's Precision may name (hls4ml's names for Dense, activations and the input).
_PRECISION_VARIABLES = {"default", "result", "weight", "bias", "accum", "table", "scale", "output"}
_LAYER_KEYS = {"Precision", "ReuseFactor", "Strategy", "Trace", "TableSize"}
_MODEL_KEYS = {"Precision", "ReuseFactor", "Strategy", "BramFactor", "TraceOutput", "BitExact"}


def _quantizer_bits(quantizer: Any, where: str) -> tuple[int, int]:
    # (bits, integer) as build_network's quantized_bits / quantized_relu take them, read by the same checks
    # the firmware's tracer applies (alpha=1, no stochastic rounding, signed and not symmetric for quantized_bits).
    from . import fpga

    if type(quantizer).__name__ == "quantized_relu":
        _, integer, fraction, _ = fpga._relu_format(quantizer, where)
        return integer + fraction, integer
    keep_negative, integer, fraction, symmetric = fpga._bits_format(quantizer, where)
    if not keep_negative or symmetric:
        raise ValueError(f"{where}: use a signed, non-symmetric quantized_bits (keep_negative=1, symmetric=0)")
    return 1 + integer + fraction, integer


def describe_network(model: Any) -> list[dict]:
    """A QKeras trigger network as plain data.

    Supported layers, in order: an optional input ``QActivation(quantized_bits(..., alpha=1))``, then
    ``QDense`` layers (``quantized_bits`` kernel and bias, ``alpha=1``), each but the last followed by a
    ``QActivation(quantized_relu(bits, integer))``.

    Args:
        model: a Keras 2 model built from those layers.

    Returns:
        A list of dicts: ``{"kind": "input", "bits", "integer"}``, ``{"kind": "dense", "kernel", "bias",
        "bits", "integer"}`` (kernel and bias as float arrays) and ``{"kind": "relu", "bits", "integer"}``.
    """
    description: list[dict] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "QDense":
            kernel_bits = _quantizer_bits(layer.kernel_quantizer_internal, f"{layer.name} kernel")
            bias_bits = _quantizer_bits(layer.bias_quantizer_internal, f"{layer.name} bias")
            if kernel_bits != bias_bits:
                raise ValueError(f"{layer.name}: use the same quantizer for kernel and bias")
            kernel, bias = layer.get_weights()
            description.append(
                {
                    "kind": "dense",
                    "kernel": kernel,
                    "bias": bias,
                    "bits": kernel_bits[0],
                    "integer": kernel_bits[1],
                }
            )
        elif kind == "QActivation":
            name = type(layer.quantizer).__name__
            if name not in ("quantized_bits", "quantized_relu"):
                raise ValueError(f"{layer.name}: {name} is not supported (quantized_bits or quantized_relu)")
            bits = _quantizer_bits(layer.quantizer, layer.name)
            kind_name = "input" if name == "quantized_bits" else "relu"
            description.append({"kind": kind_name, "bits": bits[0], "integer": bits[1]})
        else:
            raise ValueError(f"{layer.name}: a {kind} layer is not supported in the trigger network")
    return description


def _small_int(value: Any, low: int, high: int, where: str) -> int:
    # Exact Python or NumPy integers only (not bool, not float): the value becomes a plain int here.
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= int(value) <= high:
        raise ValueError(f"{where} must be an integer from {low} to {high}, not {value!r}")
    return int(value)


def _real_array(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    # A plain numeric array (or nested lists) of the given shape with finite values, copied to float64.
    if not isinstance(value, np.ndarray | list) or (
        isinstance(value, np.ndarray) and value.dtype.kind not in "fiu"
    ):
        raise ValueError(f"{where} must be a numeric array")
    array = np.array(value, dtype=np.float64)
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise ValueError(f"{where} must have shape {shape} and finite values, got shape {array.shape}")
    return array


def checked_description(
    description: Any, n_inputs: int, input_format: tuple[int, int] | None = None
) -> list[dict]:
    """A checked copy of ``describe_network``'s description: plain ints and float64 arrays only.

    Raises ValueError with what is wrong for anything outside the supported form and limits
    (``MAX_DENSE_LAYERS``, ``MAX_UNITS``, ``MAX_BITS``, ``MAX_WEIGHT_BITS``). Weights and biases are put on
    their quantizer's grid (rounded half to even and saturated, as QKeras does), so that what is checked,
    counted, built and traced are the same numbers.

    Args:
        description: the plain description.
        n_inputs: the number of inputs of the network.
        input_format: (bits, integer) the input quantizer must have, or None for any.
    """
    if not isinstance(description, list) or not 2 <= len(description) <= 2 * MAX_DENSE_LAYERS + 1:
        raise ValueError("the description must be a list of layers (from mlhep.quantized.describe_network)")
    layers: list[dict] = []
    width, previous = n_inputs, None
    for position, entry in enumerate(description):
        where = f"layer {position}"
        if not isinstance(entry, dict) or entry.get("kind") not in ("input", "dense", "relu"):
            raise ValueError(f"{where}: expected a dict with kind 'input', 'dense' or 'relu'")
        kind = str(entry["kind"])
        bits = _small_int(entry.get("bits"), 2, MAX_BITS, f"{where}: bits")
        integer = _small_int(entry.get("integer"), 0, bits - 1, f"{where}: integer")
        checked: dict = {"kind": kind, "bits": bits, "integer": integer}
        if kind == "input" and position != 0:
            raise ValueError(f"{where}: the input quantizer can only be the first layer")
        if kind == "relu" and previous != "dense":
            raise ValueError(f"{where}: a relu must follow a dense layer")
        if kind == "dense" and previous == "dense":
            raise ValueError(f"{where}: a relu quantizer must come between two dense layers")
        if kind == "input" and input_format is not None and (bits, integer) != tuple(input_format):
            raise ValueError(
                f"{where}: the trigger's inputs are quantized_bits{tuple(input_format)}, not ({bits}, {integer})"
            )
        if kind == "dense":
            if sum(layer["kind"] == "dense" for layer in layers) == MAX_DENSE_LAYERS:
                raise ValueError(f"at most {MAX_DENSE_LAYERS} dense layers")
            kernel = entry.get("kernel")
            units = np.shape(kernel)[1] if isinstance(kernel, np.ndarray) and kernel.ndim == 2 else -1
            if not 1 <= units <= MAX_UNITS:
                raise ValueError(f"{where}: kernel must have shape ({width}, 1..{MAX_UNITS})")
            checked["kernel"] = _on_grid(_real_array(kernel, (width, units), f"{where}: kernel"), bits, integer)
            checked["bias"] = _on_grid(_real_array(entry.get("bias"), (units,), f"{where}: bias"), bits, integer)
            width = units
        layers.append(checked)
        previous = kind
    if layers[0]["kind"] != "input":
        raise ValueError(
            "the first layer must be the input quantizer: it fixes the format of the trigger's inputs"
        )
    if previous != "dense":
        raise ValueError("the network must end with a dense layer (its outputs are the latent means)")
    size = weight_bits(layers)
    if size > MAX_WEIGHT_BITS:
        raise ValueError(
            f"the network has {size:,} weight bits (nonzero weights x their bits); the grader builds networks of "
            f"up to {MAX_WEIGHT_BITS:,}, far over the hardware budget anyway: prune or quantize it further"
        )
    return layers


def build_network(description: Any, n_inputs: int, input_format: tuple[int, int] | None = None) -> Any:
    """Rebuild (and check) a QKeras network from ``describe_network``'s plain description.

    Raises ValueError with what is wrong for anything outside the supported form and limits.
    """
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    layers = checked_description(description, n_inputs, input_format)
    model_layers: list[Any] = [tf.keras.layers.Input(shape=(n_inputs,))]
    weights: list[tuple[str, list[np.ndarray]]] = []
    for entry in layers:
        if entry["kind"] == "input":
            model_layers.append(QActivation(quantized_bits(entry["bits"], entry["integer"], alpha=1)))
        elif entry["kind"] == "relu":
            model_layers.append(QActivation(quantized_relu(entry["bits"], entry["integer"])))
        else:
            quantizer = quantized_bits(entry["bits"], entry["integer"], alpha=1)
            layer = QDense(entry["kernel"].shape[1], kernel_quantizer=quantizer, bias_quantizer=quantizer)
            model_layers.append(layer)
            weights.append((layer.name, [entry["kernel"].astype(np.float32), entry["bias"].astype(np.float32)]))
    model = tf.keras.Sequential(model_layers)
    for name, values in weights:
        model.get_layer(name).set_weights(values)
    return model


def _on_grid(values: np.ndarray, bits: int, integer: int) -> np.ndarray:
    # quantized_bits(bits, integer, alpha=1): steps of 2**-(bits - 1 - integer) in [-2**integer, 2**integer - step]
    step = 2.0 ** -(bits - 1 - integer)
    return np.clip(np.rint(values / step), -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) * step


def weight_bits(description: list[dict]) -> int:
    """Nonzero weights x their bit width, summed over the dense layers of a description (weights on their grid)."""
    total = 0
    for entry in description:
        if entry["kind"] == "dense":
            on_grid = _on_grid(np.asarray(entry["kernel"], dtype=np.float64), entry["bits"], entry["integer"])
            total += int(np.count_nonzero(on_grid)) * int(entry["bits"])
    return total


def example_network(seed: int = 6) -> Any:
    """The small QKeras network of exercise 06, Task 2: 8 -> 6 (relu) -> 3, 6-bit weights, no input quantizer.

    Its weights are drawn from ``seed`` and put on their grid, so the network is the same wherever it is built.
    """
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    rng = np.random.default_rng(seed)
    weight_grid = quantized_bits(6, 0, alpha=1)
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Input(shape=(8,), name="features"),
            QDense(6, kernel_quantizer=weight_grid, bias_quantizer=weight_grid, name="hidden"),
            QActivation(quantized_relu(6, 2), name="hidden_relu"),
            QDense(3, kernel_quantizer=weight_grid, bias_quantizer=weight_grid, name="output"),
        ],
        name="example_network",
    )
    for layer, (n_in, n_out) in zip((model.get_layer("hidden"), model.get_layer("output")), ((8, 6), (6, 3))):
        values = [rng.uniform(-0.2, 0.2, (n_in, n_out)), rng.uniform(-0.5, 0.5, n_out)]
        layer.set_weights([np.asarray(weight_grid(v.astype(np.float32))) for v in values])
    return model


def checked_hls_config(config: Any, layer_names: list[str]) -> dict:
    """A copy of an hls4ml configuration that holds only known keys and well-formed values.

    hls4ml pastes precision strings into the C++ it writes, so a configuration from an untrusted notebook is
    rebuilt here key by key: precisions must read like ``fixed<16,6>`` or ``ufixed<8,3,RND_CONV,SAT>`` (or
    ``auto``), reuse factors be small integers, and layer names be those of the network.

    Args:
        config: a nested dict as from ``hls4ml.utils.config_from_keras_model(..., granularity="name")``.
        layer_names: the names hls4ml gives the network's layers.

    Raises:
        ValueError: naming the first key or value that is not allowed.
    """

    def precision_string(value: Any, where: str) -> str:
        match = _PRECISION.fullmatch(value.replace(" ", "")) if isinstance(value, str) else None
        if value == "auto":
            return "auto"
        if match is None:
            raise ValueError(f"{where}: {value!r} is not a precision like 'fixed<16,6>' or 'auto'")
        kind, width = match["kind"], int(match["width"])
        integer = int(match["integer"]) if match["integer"] is not None else None
        rounding, overflow, saturation = match["rounding"], match["overflow"], match["saturation_bits"]
        if kind.endswith("int"):
            if integer is not None or rounding or overflow or saturation or not 1 <= width <= MAX_PRECISION_BITS:
                raise ValueError(f"{where}: {value!r}: write int<W> with 1 <= W <= {MAX_PRECISION_BITS}")
            return f"{kind}<{width}>"
        if integer is None or not 1 <= width <= MAX_PRECISION_BITS or not -width <= integer <= 2 * width:
            raise ValueError(f"{where}: {value!r}: need fixed<W,I> with 1 <= W <= {MAX_PRECISION_BITS}, |I| <= 2W")
        if (rounding and rounding not in ROUNDING_MODES) or (overflow and overflow not in OVERFLOW_MODES):
            raise ValueError(f"{where}: {value!r}: rounding in {ROUNDING_MODES}, overflow in {OVERFLOW_MODES}")
        parts = [str(width), str(integer)] + ([rounding] if rounding else []) + ([overflow] if overflow else [])
        if saturation is not None:
            if not overflow or not 0 <= int(saturation) <= width:
                raise ValueError(f"{where}: {value!r}: saturation bits need an overflow mode and at most W")
            parts.append(str(int(saturation)))
        return f"{kind}<{','.join(parts)}>"

    def precision(value: Any, where: str) -> str | dict:
        if isinstance(value, dict):
            unknown = [key for key in value if key not in _PRECISION_VARIABLES]
            if unknown:
                raise ValueError(
                    f"{where}: unknown precision variables {unknown}; known: {sorted(_PRECISION_VARIABLES)}"
                )
            return {key: precision_string(text, f"{where}[{key!r}]") for key, text in value.items()}
        return precision_string(value, where)

    def section(values: Any, allowed: set[str], where: str) -> dict:
        if not isinstance(values, dict):
            raise ValueError(f"{where} must be a dict")
        out: dict = {}
        for key, value in values.items():
            if key not in allowed:
                raise ValueError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
            here = f"{where}[{key!r}]"
            if key == "Precision":
                out[key] = precision(value, here)
            elif key in ("ReuseFactor", "TableSize", "BramFactor"):
                limit = {"ReuseFactor": 1024, "TableSize": 65536, "BramFactor": 10**9}[key]
                if not isinstance(value, int | np.integer) or isinstance(value, bool) or not 1 <= value <= limit:
                    raise ValueError(f"{here} must be an integer from 1 to {limit}")
                out[key] = int(value)
            elif key == "Strategy":
                if value not in ("Latency", "Resource"):
                    raise ValueError(f"{here} must be 'Latency' or 'Resource'")
                out[key] = str(value)
            elif key == "BitExact":  # hls4ml's switch for exact precision propagation
                if not (value is None or isinstance(value, bool) or value == "auto"):
                    raise ValueError(f"{here} must be True, False, None or 'auto'")
                out[key] = value
            else:  # Trace, TraceOutput
                if not isinstance(value, bool):
                    raise ValueError(f"{here} must be True or False")
                out[key] = bool(value)
        return out

    if not isinstance(config, dict) or not set(config) <= {"Model", "LayerName"}:
        raise ValueError("the configuration must be a dict with the keys 'Model' and 'LayerName'")
    checked = {"Model": section(config.get("Model", {}), _MODEL_KEYS, "config['Model']")}
    layers = config.get("LayerName", {})
    if not isinstance(layers, dict):
        raise ValueError("config['LayerName'] must be a dict")
    unknown = [name for name in layers if name not in layer_names]
    if unknown:
        raise ValueError(f"config['LayerName'] names unknown layers {unknown}; the network's are {layer_names}")
    checked["LayerName"] = {
        name: section(values, _LAYER_KEYS, f"config['LayerName'][{name!r}]") for name, values in layers.items()
    }
    return checked


def chain_copy(model: Any, last_layer: str) -> Any:
    """A standalone ``Sequential`` copy (same weights) of the chain of layers from the input to ``last_layer``.

    An encoder trained with side branches (a VAE's ``log_var``, pruning wrappers stripped) becomes the plain
    chain that goes into the FPGA: hls4ml and da4ml then see one input, one output and nothing else.
    """
    import tensorflow as tf

    chain = [model.get_layer(last_layer)]
    while True:
        # The layer's latest call is the one in `model` (strip_pruning reuses layers of the pruned graph).
        inbound = chain[0]._inbound_nodes[-1].inbound_layers
        if isinstance(inbound, list):
            if len(inbound) != 1:
                raise ValueError(f"{chain[0].name} has {len(inbound)} inputs; only a chain can be copied")
            inbound = inbound[0]
        if type(inbound).__name__ == "InputLayer":
            break
        chain.insert(0, inbound)
    copies = [type(layer).from_config(layer.get_config()) for layer in chain]
    copy = tf.keras.Sequential([tf.keras.layers.Input(shape=model.input_shape[1:]), *copies])
    for original, new in zip(chain, copies):
        new.set_weights(original.get_weights())
    return copy
