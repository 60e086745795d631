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
# Tracing a network into hardware takes time that grows with its bit operations (nonzero weights x weight
# bits x input bits): 45 000 for the lecture's 4-bit pruned detector (under a second), 550 000 for the
# 16-bit one (30 s). The grader refuses more than MAX_BIT_OPERATIONS, far over any hardware budget anyway.
MAX_BIT_OPERATIONS = 200_000

ROUNDING_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
_PRECISION = re.compile(
    r"(auto|u?int<\d{1,2}>|u?fixed<\d{1,2},-?\d{1,2}(,(" + "|".join(ROUNDING_MODES) + r")"
    r"(,(" + "|".join(OVERFLOW_MODES) + r")(,\d{1,2})?)?)?>)"
)
_LAYER_KEYS = {"Precision", "ReuseFactor", "Strategy", "Trace", "TableSize"}
_MODEL_KEYS = {"Precision", "ReuseFactor", "Strategy", "BramFactor", "TraceOutput", "BitExact"}


def _quantizer_bits(quantizer: Any, where: str) -> tuple[int, int]:
    config = quantizer.get_config()
    alpha = config.get("alpha", 1)
    if alpha not in (1, 1.0, None):
        raise ValueError(f"{where}: alpha={alpha!r}; use alpha=1 so that weights lie on a fixed-point grid")
    return int(config["bits"]), int(config["integer"])


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


def build_network(description: Any, n_inputs: int) -> Any:
    """Rebuild (and check) a QKeras network from ``describe_network``'s plain description.

    Raises ValueError with what is wrong for anything outside the supported form and limits.
    """
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    if not isinstance(description, list) or not description:
        raise ValueError("the description must be a non-empty list (from mlhep.quantized.describe_network)")
    model_layers: list[Any] = [tf.keras.layers.Input(shape=(n_inputs,))]
    weights: list[tuple[str, list[np.ndarray]]] = []
    width, n_dense, previous = n_inputs, 0, None
    for position, entry in enumerate(description):
        if not isinstance(entry, dict) or entry.get("kind") not in ("input", "dense", "relu"):
            raise ValueError(f"layer {position}: expected a dict with kind 'input', 'dense' or 'relu'")
        kind = entry["kind"]
        bits, integer = entry.get("bits"), entry.get("integer")
        if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in (bits, integer)):
            raise ValueError(f"layer {position}: bits and integer must be integers")
        if not (2 <= bits <= MAX_BITS and 0 <= integer < bits):
            raise ValueError(f"layer {position}: need 2 <= bits <= {MAX_BITS} and 0 <= integer < bits")
        if kind == "input":
            if position != 0:
                raise ValueError("the input quantizer can only be the first layer")
            model_layers.append(QActivation(quantized_bits(int(bits), int(integer), alpha=1)))
        elif kind == "relu":
            if previous != "dense":
                raise ValueError(f"layer {position}: a relu must follow a dense layer")
            model_layers.append(QActivation(quantized_relu(int(bits), int(integer))))
        else:
            kernel = np.asarray(entry.get("kernel"), dtype=np.float64)
            bias = np.asarray(entry.get("bias"), dtype=np.float64)
            if kernel.ndim != 2 or kernel.shape[0] != width or not 1 <= kernel.shape[1] <= MAX_UNITS:
                raise ValueError(f"layer {position}: kernel must have shape ({width}, 1..{MAX_UNITS})")
            if bias.shape != (kernel.shape[1],) or not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
                raise ValueError(f"layer {position}: bias must have shape ({kernel.shape[1]},); all values finite")
            n_dense += 1
            if n_dense > MAX_DENSE_LAYERS:
                raise ValueError(f"at most {MAX_DENSE_LAYERS} dense layers")
            quantizer = quantized_bits(int(bits), int(integer), alpha=1)
            layer = QDense(kernel.shape[1], kernel_quantizer=quantizer, bias_quantizer=quantizer)
            model_layers.append(layer)
            weights.append((layer.name, [kernel.astype(np.float32), bias.astype(np.float32)]))
            width = kernel.shape[1]
        previous = kind
    if previous != "dense":
        raise ValueError("the network must end with a dense layer (its outputs are the latent means)")
    if description[0]["kind"] != "input":
        raise ValueError(
            "the first layer must be the input quantizer: it fixes the format of the trigger's inputs"
        )
    operations = bit_operations(description)
    if operations > MAX_BIT_OPERATIONS:
        raise ValueError(
            f"the network needs {operations:,} bit operations (nonzero weights x weight bits x input bits); "
            f"the grader builds networks of up to {MAX_BIT_OPERATIONS:,}: prune or quantize it further"
        )
    model = tf.keras.Sequential(model_layers)
    for name, values in weights:
        model.get_layer(name).set_weights(values)
    return model


def bit_operations(description: list[dict]) -> int:
    """Nonzero weights x weight bits x bits of the values they multiply, summed over the dense layers."""
    total, input_bits = 0, 32
    for entry in description:
        if entry["kind"] in ("input", "relu"):
            input_bits = int(entry["bits"])
        else:
            total += int(np.count_nonzero(np.asarray(entry["kernel"]))) * int(entry["bits"]) * input_bits
            input_bits = 32  # a dense layer's sums are wide until the next quantizer
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

    def precision(value: Any, where: str) -> str | dict:
        if isinstance(value, str):
            text = value.replace(" ", "")
            if not _PRECISION.fullmatch(text):
                raise ValueError(f"{where}: {value!r} is not a precision like 'fixed<16,6>' or 'auto'")
            return text
        if isinstance(value, dict) and all(isinstance(k, str) and k.isidentifier() for k in value):
            return {k: precision(v, f"{where}[{k!r}]") for k, v in value.items()}
        raise ValueError(f"{where}: expected a precision string or a dict of them")

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
