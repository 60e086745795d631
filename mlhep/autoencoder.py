"""A dense autoencoder as plain data, and the anomaly score the grader computes from it (lesson 01).

The lecture's preprocessing (:func:`prepare_events`: azimuth measured from the leading jet, each
slot and feature scaled with the mean and width of its *real* objects, padded slots at 0) and its
padding-aware score (:func:`padding_aware_score`) live here so that the exercise and the grader
apply exactly the same ones. A student's network crosses to the grader as a plain description
(:func:`describe_autoencoder`: weights and layer kinds, never a Keras object); the grader checks it
(:func:`checked_autoencoder`) and runs it in NumPy (:func:`reconstruct`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_fetch.cms_ad import N_SLOTS, SLOT_RANGES

N_FEATURES = 3
N_INPUTS = N_SLOTS * N_FEATURES  # 57
FIRST_JET = SLOT_RANGES["jet"][0]

#: Activations a described Dense or Activation layer may use.
ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish", "leaky_relu")
# Limits of what the grader rebuilds: well above the lecture's 57-32-16-3-16-32-57 (13 layers with its
# BatchNormalization and activations), small enough that the largest network runs on the grader's few
# thousand events in seconds (24 layers of 256 units: about 5e9 multiplications).
MAX_LAYERS = 24
MAX_UNITS = 256
#: The narrowest Dense layer of an autoencoder: it must compress the 57 inputs.
MAX_BOTTLENECK = 8


# ----------------------------------------------------------------------------- preprocessing and score
def real_slots(objects) -> np.ndarray:
    """(n_events, 19) bool: which slots hold an object (pT > 0)."""
    return np.asarray(objects)[..., 0] > 0


def rotated_objects(objects) -> np.ndarray:
    """The objects with each azimuth measured from the leading jet's (wrapped to [-pi, pi]); padded slots 0."""
    objects = np.asarray(objects, dtype=np.float64)
    rotated = objects.copy()
    delta_phi = np.angle(np.exp(1j * (objects[..., 2] - objects[:, FIRST_JET, 2:3])))
    rotated[..., 2] = np.where(real_slots(objects), delta_phi, 0.0)
    return rotated


def real_object_scaling(objects) -> tuple[np.ndarray, np.ndarray]:
    """Mean and width of each (slot, feature) over the real objects of ``objects`` (after the rotation).

    Returns:
        (mean, std), each of shape (19, 3); std is 1 where a slot has fewer than two real objects or
        no spread.
    """
    rotated, real = rotated_objects(objects), real_slots(objects)
    n_real = real.sum(axis=0)[:, None]
    mean = np.where(real[..., None], rotated, 0.0).sum(axis=0) / np.maximum(n_real, 1)
    variance = np.where(real[..., None], (rotated - mean) ** 2, 0.0).sum(axis=0) / np.maximum(n_real, 1)
    std = np.where((n_real > 1) & (variance > 0), np.sqrt(variance), 1.0)
    return mean, std


def scaling_floor(objects) -> np.ndarray:
    """Half the width of each (slot, feature) over the real objects of ``objects``: the smallest scale
    the grader applies (a smaller one would magnify one input's error over all the others).

    Where a slot has fewer than 20 real objects its own width is unreliable, and the width of that
    feature over all slots of the same object type stands in.
    """
    rotated, real = rotated_objects(objects), real_slots(objects)
    _, std = real_object_scaling(objects)
    floor = 0.5 * std
    for start, size in SLOT_RANGES.values():
        slots = slice(start, start + size)
        pooled = rotated[:, slots][real[:, slots]]  # (n real objects of this type, 3)
        pooled_std = pooled.std(axis=0) if len(pooled) > 1 else np.ones(N_FEATURES)
        rare = real[:, slots].sum(axis=0) < 20
        floor[slots][rare] = 0.5 * np.where(pooled_std > 0, pooled_std, 1.0)
    return floor


def prepare_events(objects, feature_mean, feature_std) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs and their real-entry mask, both float32 of shape (n_events, 57).

    Real entries are ``(rotated - mean) / std``; padded ones are exactly 0 in both arrays.
    """
    rotated, real = rotated_objects(objects), real_slots(objects)
    mean, std = np.asarray(feature_mean, dtype=np.float64), np.asarray(feature_std, dtype=np.float64)
    x = np.where(real[..., None], (rotated - mean) / std, 0.0)
    mask = np.repeat(real[..., None], N_FEATURES, axis=-1)
    n = len(x)
    return x.reshape(n, -1).astype(np.float32), mask.reshape(n, -1).astype(np.float32)


def padding_aware_score(x, reconstruction, mask) -> np.ndarray:
    """Mean squared reconstruction error over each event's real entries (0 for an event with none)."""
    x, reconstruction, mask = (np.asarray(a, dtype=np.float64) for a in (x, reconstruction, mask))
    return np.sum(mask * (reconstruction - x) ** 2, axis=1) / np.maximum(mask.sum(axis=1), 1.0)


def explained_variance(x, reconstruction, mask) -> float:
    """1 - (squared error over real entries) / (their squared spread around each column's real mean).

    1 is a perfect reconstruction; 0 is no better than the column means; a network that ignores
    its inputs scores at most about 0.
    """
    x, reconstruction, mask = (np.asarray(a, dtype=np.float64) for a in (x, reconstruction, mask))
    column_mean = (mask * x).sum(axis=0) / np.maximum(mask.sum(axis=0), 1.0)
    spread = np.sum(mask * (x - column_mean) ** 2)
    return float(1.0 - np.sum(mask * (reconstruction - x) ** 2) / max(spread, 1e-12))


# ----------------------------------------------------------------------------- the network as plain data
def describe_autoencoder(model: Any) -> list[dict]:
    """A dense Keras autoencoder as plain data: one dict per layer, in order.

    Supported layers: ``Dense``, ``BatchNormalization`` (on the last axis), ``LeakyReLU``, ``ReLU``
    (plain), ``Activation`` and ``Dropout`` (a no-op at inference). The description is a chain:
    what :func:`reconstruct` computes from it must match ``model.predict`` (the exercise checks that).
    """
    description: list[dict] = []
    for layer in model.layers:
        kind = type(layer).__name__
        config = layer.get_config()
        if kind in ("InputLayer", "Dropout"):
            continue
        if kind == "Dense":
            kernel, *bias = layer.get_weights()
            description.append(
                {
                    "kind": "dense",
                    "kernel": np.asarray(kernel, dtype=np.float64),
                    "bias": np.asarray(bias[0] if bias else np.zeros(kernel.shape[1]), dtype=np.float64),
                    "activation": str(config.get("activation", "linear")),
                }
            )
        elif kind == "BatchNormalization":
            axis = config.get("axis", -1)
            if axis not in (-1, [-1], 1, [1]):
                raise ValueError(f"{layer.name}: only BatchNormalization over the last axis is supported")
            weights = {
                w.name.split("/")[-1].split(":")[0]: np.asarray(w.numpy(), np.float64) for w in layer.weights
            }
            n = weights["moving_mean"].shape[0]
            description.append(
                {
                    "kind": "batch_norm",
                    "gamma": weights.get("gamma", np.ones(n)),
                    "beta": weights.get("beta", np.zeros(n)),
                    "mean": weights["moving_mean"],
                    "variance": weights["moving_variance"],
                    "epsilon": float(config["epsilon"]),
                }
            )
        elif kind == "LeakyReLU":
            description.append({"kind": "activation", "activation": "leaky_relu", "alpha": float(config["alpha"])})
        elif kind == "ReLU":
            if (
                config.get("max_value") is not None
                or config.get("threshold", 0)
                or config.get("negative_slope", 0)
            ):
                raise ValueError(
                    f"{layer.name}: only a plain ReLU is supported (no max_value, threshold or slope)"
                )
            description.append({"kind": "activation", "activation": "relu"})
        elif kind == "Activation":
            description.append({"kind": "activation", "activation": str(config["activation"])})
        else:
            raise ValueError(
                f"{layer.name}: layers of type {kind} are not supported; use Dense, BatchNormalization, "
                "LeakyReLU, ReLU, Activation and Dropout"
            )
    return description


def _array(value: Any, shape: tuple, where: str) -> np.ndarray:
    # Plain numbers only: a float64 copy of the right shape and finite entries.
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be an array of numbers") from None
    if array.shape != shape:
        raise ValueError(f"{where} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where} must hold finite numbers")
    return array


def _activation_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise ValueError(f"{where}: activation must be one of {', '.join(ACTIVATIONS)}, got {value!r}")
    return value


def checked_autoencoder(description: Any, n_inputs: int = N_INPUTS) -> list[dict]:
    """A fresh copy of ``description`` built from plain numbers, if it is an autoencoder the grader
    runs: a chain of the supported layers from ``n_inputs`` back to ``n_inputs``, at most MAX_LAYERS
    layers of at most MAX_UNITS units, a Dense layer of at most MAX_BOTTLENECK units somewhere (it
    compresses), and a last layer that is Dense and linear. Raises ValueError saying what is wrong.
    """
    if not isinstance(description, (list, tuple)) or not 1 <= len(description) <= MAX_LAYERS:
        raise ValueError(f"the description must be a list of 1 to {MAX_LAYERS} layers")
    checked: list[dict] = []
    width = n_inputs
    for index, layer in enumerate(description):
        where = f"layer {index}"
        if not isinstance(layer, dict):
            raise ValueError(f"{where} must be a dict")
        kind = layer.get("kind")
        if kind == "dense":
            kernel = np.array(layer.get("kernel"), dtype=object)
            units = kernel.shape[1] if kernel.ndim == 2 else -1
            if not 1 <= units <= MAX_UNITS:
                raise ValueError(f"{where}: a Dense kernel must have shape ({width}, 1 to {MAX_UNITS})")
            checked.append(
                {
                    "kind": "dense",
                    "kernel": _array(layer.get("kernel"), (width, units), f"{where} kernel"),
                    "bias": _array(layer.get("bias"), (units,), f"{where} bias"),
                    "activation": _activation_name(layer.get("activation"), where),
                }
            )
            width = units
        elif kind == "batch_norm":
            norm: dict[str, Any] = {"kind": "batch_norm"}
            for key in ("gamma", "beta", "mean", "variance"):
                norm[key] = _array(layer.get(key), (width,), f"{where} {key}")
            norm["epsilon"] = float(_array(layer.get("epsilon"), (), f"{where} epsilon"))
            if np.any(norm["variance"] < 0) or norm["epsilon"] <= 0:
                raise ValueError(f"{where}: variances must be >= 0 and epsilon > 0")
            checked.append(norm)
        elif kind == "activation":
            activation: dict[str, Any] = {
                "kind": "activation",
                "activation": _activation_name(layer.get("activation"), where),
            }
            if activation["activation"] == "leaky_relu":
                activation["alpha"] = float(_array(layer.get("alpha", 0.2), (), f"{where} alpha"))
            checked.append(activation)
        else:
            raise ValueError(f"{where}: kind must be 'dense', 'batch_norm' or 'activation', got {kind!r}")
    dense = [layer for layer in checked if layer["kind"] == "dense"]
    if width != n_inputs:
        raise ValueError(f"an autoencoder gives back its {n_inputs} inputs; this network gives {width} numbers")
    if checked[-1]["kind"] != "dense" or checked[-1]["activation"] != "linear":
        raise ValueError("the last layer must be a Dense layer without activation (the reconstruction)")
    narrowest = min(layer["kernel"].shape[1] for layer in dense)
    if narrowest > MAX_BOTTLENECK:
        raise ValueError(
            f"an autoencoder compresses: its narrowest Dense layer must have at most {MAX_BOTTLENECK} units "
            f"(this one has {narrowest})"
        )
    return checked


def _activate(x: np.ndarray, name: str, alpha: float = 0.2) -> np.ndarray:
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "leaky_relu":
        return np.where(x >= 0, x, alpha * x)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
    if name == "selu":
        return 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0.0)))
    if name == "softplus":
        return np.logaddexp(0.0, x)
    if name == "swish":
        return x * 0.5 * (1.0 + np.tanh(0.5 * x))
    raise ValueError(f"unknown activation {name!r}")


def reconstruct(description: list[dict], x, until: int | None = None) -> np.ndarray:
    """Run a checked description on inputs ``x`` (n, 57) in float64; ``until``: stop before that layer."""
    h = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in description[:until]:
            if layer["kind"] == "dense":
                h = _activate(h @ layer["kernel"] + layer["bias"], layer["activation"])
            elif layer["kind"] == "batch_norm":
                h = (h - layer["mean"]) / np.sqrt(layer["variance"] + layer["epsilon"]) * layer["gamma"] + layer[
                    "beta"
                ]
            else:
                h = _activate(h, layer["activation"], layer.get("alpha", 0.2))
    return h


def refit_output_layer(description: list[dict], x, mask) -> list[dict]:
    """The description with its last (linear Dense) layer replaced by the least-squares best one.

    Each output column is fitted on the events where that input is real, from the activations that
    feed the last layer. The grader scores this refitted network: a trained autoencoder's last layer
    is already close to it, while a last layer set to miss chosen inputs on purpose (to turn the
    error into a hand-picked variable) gets its reconstruction back.
    """
    hidden = reconstruct(description, x, until=-1)
    if not np.all(np.isfinite(hidden)):
        raise ValueError("the network gives values that are not finite numbers on these events")
    x, mask = np.asarray(x, dtype=np.float64), np.asarray(mask) > 0
    design = np.column_stack([hidden, np.ones(len(hidden))])
    kernel = np.zeros((hidden.shape[1], x.shape[1]))
    bias = np.zeros(x.shape[1])
    for column in range(x.shape[1]):
        rows = mask[:, column]
        if rows.sum() <= design.shape[1]:  # too few real entries to fit: their mean
            bias[column] = x[rows, column].mean() if rows.any() else 0.0
            continue
        solution, *_ = np.linalg.lstsq(design[rows], x[rows, column], rcond=None)
        kernel[:, column], bias[column] = solution[:-1], solution[-1]
    return [*description[:-1], {"kind": "dense", "kernel": kernel, "bias": bias, "activation": "linear"}]


# ----------------------------------------------------------------------------- the grader's figures
def fresh_event_scores(
    description: Any, feature_mean, feature_std, objects, refit_rows, scored_rows
) -> tuple[np.ndarray, float]:
    """What exercise 01's grader computes from a described autoencoder on events it never trained on.

    1. The widths: ``feature_std``, never below :func:`scaling_floor` of the refit events.
    2. The inputs of ``objects[refit_rows]`` (background only) and the network's last layer refitted
       on them (:func:`refit_output_layer`); how much of their variance it explains.
    3. The padding-aware score of ``objects[scored_rows]``.

    The grader calls it on its fresh events; the exercise calls it on the events it held back from
    training, to show the student an estimate of the grade before submitting.

    Returns:
        (scores of ``scored_rows``, explained variance on ``refit_rows``)
    """
    objects = np.asarray(objects)
    network = checked_autoencoder(description)
    mean = _array(feature_mean, (N_SLOTS, N_FEATURES), "feature_mean")
    std = np.maximum(_array(feature_std, (N_SLOTS, N_FEATURES), "feature_std"), scaling_floor(objects[refit_rows]))
    refit_x, refit_mask = prepare_events(objects[refit_rows], mean, std)
    network = refit_output_layer(network, refit_x, refit_mask)
    explained = explained_variance(refit_x, reconstruct(network, refit_x), refit_mask)
    scored_x, scored_mask = prepare_events(objects[scored_rows], mean, std)
    return padding_aware_score(scored_x, reconstruct(network, scored_x), scored_mask), explained
