"""``baseline-cnn``, ``cnn`` and ``lenet5`` in Keras, layer by layer the PyTorch ones.

Each Keras layer is named after the PyTorch module it stands for (``features.0.0`` is the first
conv of ``cnn`` in both), so weights map across by name (``convert.py``) and explain's layer
names are the same in both frameworks. Inputs are channels-last (N, H, W, C), as TensorFlow's CPU
convolutions need. Where the two libraries' defaults differ, the PyTorch value is set explicitly:
BatchNorm epsilon 1e-5 and momentum 0.1 (Keras: 0.9 of the old value), the default Conv/Linear
initialization U(+-1/sqrt(fan_in)) for weights and biases, and flattening in (C, H, W) order.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.models import build_model
from cnnkit.models.keras import import_keras
from cnnkit.models.layers import scaled
from cnnkit.models.lenet import NATIVE_SIZE

Layers = list[Any]


def _torch_init(keras: Any, fan_in: int) -> dict[str, Any]:
    """PyTorch's default init (kaiming_uniform with a=sqrt(5)): U(+-1/sqrt(fan_in)) for both."""
    bound = 1.0 / math.sqrt(fan_in)
    return {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}


def _conv(keras: Any, name: str, c_in: int, c_out: int, kernel: int, padding: str, bias: bool = True) -> Any:
    return keras.layers.Conv2D(c_out, kernel, padding=padding, use_bias=bias, name=name,
                               **_torch_init(keras, c_in * kernel * kernel))


def _dense(keras: Any, name: str, c_in: int, c_out: int) -> Any:
    return keras.layers.Dense(c_out, name=name, **_torch_init(keras, c_in))


def _bn(keras: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _flatten_chw(keras: Any, name: str) -> Layers:
    """PyTorch flattens (C, H, W); permute first so the dense weights are the same matrix."""
    return [keras.layers.Permute((3, 1, 2), name=f"{name}.chw"), keras.layers.Flatten(name=name)]


def _baseline(keras: Any, spec: dict[str, Any]) -> Layers:
    kw, c, k = spec["kwargs"], spec["in_channels"], spec["num_classes"]
    torch_model = build_model("baseline-cnn", k, c, spec["image_size"], **kw)  # same checks, same sizes
    hidden = torch_model.classifier[2]
    L = keras.layers
    return [
        _conv(keras, "features.0", c, 32, 3, "valid"), L.ReLU(name="features.1"), L.MaxPooling2D(2, name="features.2"),
        _conv(keras, "features.3", 32, 64, 3, "valid"), L.ReLU(name="features.4"), L.MaxPooling2D(2, name="features.5"),
        *_flatten_chw(keras, "classifier.0"), L.Dropout(kw["dropout"], name="classifier.1"),
        _dense(keras, "classifier.2", hidden.in_features, hidden.out_features), L.ReLU(name="classifier.3"),
        _dense(keras, "classifier.4", hidden.out_features, k),
    ]


def _cnn(keras: Any, spec: dict[str, Any]) -> Layers:
    kw, c_in = spec["kwargs"], spec["in_channels"]
    build_model("cnn", spec["num_classes"], c_in, spec["image_size"], **kw)  # the builder's argument checks
    L = keras.layers
    layers: Layers = []
    i = 0
    for stage, count in enumerate(kw["convs"]):
        c_out = scaled(2**stage, kw["width"])
        for _ in range(count):
            layers += [_conv(keras, f"features.{i}.0", c_in, c_out, 3, "same", bias=False),
                       _bn(keras, f"features.{i}.1"), L.ReLU(name=f"features.{i}.2")]
            c_in, i = c_out, i + 1
        # "same" max pooling pads the end of an odd map, as PyTorch's ceil_mode does (7 -> 4).
        layers.append(L.MaxPooling2D(2, padding="same", name=f"features.{i}"))
        i += 1
    return layers + [L.GlobalAveragePooling2D(name="head.0"), L.Flatten(name="head.1"),
                     L.Dropout(kw["dropout"], name="head.2"), _dense(keras, "head.3", c_in, spec["num_classes"])]


def _lenet(keras: Any, spec: dict[str, Any]) -> Layers:
    c, size, k = spec["in_channels"], spec["image_size"], spec["num_classes"]
    build_model("lenet5", k, c, size)
    L = keras.layers
    layers: Layers = []
    extra = max(0, NATIVE_SIZE - size)
    if extra:
        b = extra // 2
        layers.append(L.ZeroPadding2D(((b, extra - b), (b, extra - b)), name="pad"))
    layers += [_conv(keras, "features.0", c, 6, 5, "valid"), L.Activation("tanh", name="features.1"),
               L.AveragePooling2D(2, name="features.2"),
               _conv(keras, "features.3", 6, 16, 5, "valid"), L.Activation("tanh", name="features.4"),
               L.AveragePooling2D(2, name="features.5")]
    if size > NATIVE_SIZE:
        layers.append(L.AdaptiveAveragePooling2D(5, name="pool"))  # PyTorch's window formula
    return layers + [*_flatten_chw(keras, "classifier.0"),
                     _dense(keras, "classifier.1", 400, 120), L.Activation("tanh", name="classifier.2"),
                     _dense(keras, "classifier.3", 120, 84), L.Activation("tanh", name="classifier.4"),
                     _dense(keras, "classifier.5", 84, k)]


KERAS_MODELS: dict[str, Callable[[Any, dict[str, Any]], Layers]] = {
    "baseline-cnn": _baseline,
    "cnn": _cnn,
    "lenet5": _lenet,
}


def check_available(name: str) -> None:
    if name not in KERAS_MODELS:
        raise CnnkitError(f"model {name!r} is not available for keras; keras models: {', '.join(KERAS_MODELS)}")


def build_keras_model(spec: dict[str, Any]) -> Any:
    """A ``keras.Model`` from a model spec (model.json's name, resolved kwargs, shapes); NHWC in, logits out."""
    check_available(spec["name"])
    keras = import_keras()
    size, channels = spec["image_size"], spec["in_channels"]
    x = inputs = keras.Input((size, size, channels), name="input")
    for layer in KERAS_MODELS[spec["name"]](keras, spec):
        x = layer(x)
    return keras.Model(inputs, x, name=spec["name"])
