"""Filters, feature maps, Grad-CAM and integrated gradients of a Keras run, in TensorFlow.

The same contract as ``cnnkit.explain.attribution`` (normalized NCHW torch batch in, numpy maps
out, the same target rules and [0, 1] scaling), which dispatches here for a ``KerasModule``.
Gradients come from ``tf.GradientTape`` on the Keras model itself; layer names are the Keras
layer names, which are the PyTorch module names of the twin (``features.3.2``, ...).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError
from cnnkit.explain.attribution import _targets, _unit

# Per-element (or per-channel) layers: the rectified map of a conv is the output after these.
_ELEMENTWISE = ("BatchNormalization", "ReLU", "Activation", "Dropout", "LeakyReLU", "ELU")


def _nhwc(inputs: torch.Tensor) -> np.ndarray:
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise CnnkitError(f"explain needs a normalized float batch (N, C, H, W), got {shape}")
    return inputs.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()


def _spatial(model: Any) -> list[Any]:
    return [layer for layer in model.layers[1:] if len(layer.output.shape) == 4 and not layer.name.endswith(".chw")]


def conv_layers(model: Any) -> list[str]:
    return [layer.name for layer in model.layers if type(layer).__name__ == "Conv2D"]


def _default_layer(model: Any, which: str) -> str:
    layers = list(model.layers)
    convs = [i for i, layer in enumerate(layers) if type(layer).__name__ == "Conv2D"]
    if not convs:
        raise CnnkitError("the model has no Conv2D layer to explain")
    i = convs[-1] if which == "last" else convs[0]
    while i + 1 < len(layers) and type(layers[i + 1]).__name__ in _ELEMENTWISE:
        i += 1
    return layers[i].name


def resolve_layer(model: Any, layer: Any, which: str = "last") -> str:
    if layer is None or layer == "":
        return _default_layer(model, which)
    names = [layer.name for layer in _spatial(model)]
    if layer not in names:
        raise CnnkitError(f"no layer {layer!r} with a spatial output; layers: {', '.join(names)}")
    return str(layer)


def _tapped(model: Any, name: str) -> Any:
    """A model returning (the layer's activations, logits): the same weights, one more output."""
    from cnnkit.models.keras import import_keras

    keras = import_keras()
    return keras.Model(model.inputs[0], [model.get_layer(name).output, model.outputs[0]])


def _gradcam(model: Any, x: np.ndarray, targets: np.ndarray, name: str) -> torch.Tensor:
    import tensorflow as tf

    tapped = _tapped(model, name)
    with tf.GradientTape() as tape:
        acts, logits = tapped(x, training=False)
        score = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
    grads = tape.gradient(score, acts)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel (NHWC)
    cam = tf.nn.relu(tf.reduce_sum(weights * acts, axis=-1))
    return torch.from_numpy(np.array(cam))[:, None]


def _integrated_gradients(model: Any, x: np.ndarray, base: np.ndarray, targets: np.ndarray, steps: int) -> np.ndarray:
    """Gauss-Legendre quadrature of the path integral (Captum's default method), per image."""
    import tensorflow as tf

    nodes, w = np.polynomial.legendre.leggauss(steps)
    alphas, w = ((nodes + 1) / 2).astype(np.float32), (w / 2).astype(np.float32)
    out = np.zeros_like(x)
    for i in range(len(x)):
        path = tf.constant(base[i][None] + alphas[:, None, None, None] * (x[i] - base[i])[None])
        with tf.GradientTape() as tape:
            tape.watch(path)
            score = tf.reduce_sum(model(path, training=False)[:, int(targets[i])])
        grads = np.asarray(tape.gradient(score, path))
        out[i] = (x[i] - base[i]) * np.tensordot(w, grads, axes=1)
    return out


def explain_batch(module: Any, inputs: torch.Tensor, target: Any = None, layer: Any = None,
                  methods: Sequence[str] = ("gradcam", "integrated_gradients"),
                  baseline: torch.Tensor | None = None, steps: int = 32) -> dict[str, Any]:
    model = module.keras_model
    x = _nhwc(inputs)
    logits = torch.from_numpy(np.array(model(x, training=False)))
    targets = _targets(logits, target)
    name = resolve_layer(model, layer)
    out: dict[str, Any] = {"probabilities": torch.softmax(logits.float(), 1).numpy(),
                           "targets": targets.numpy(), "layer": name}
    t = targets.numpy()
    if "gradcam" in methods:
        cam = _gradcam(model, x, t, name)
        out["gradcam"] = _unit(F.interpolate(cam, size=x.shape[1:3], mode="bilinear", align_corners=False)[:, 0])
    if "integrated_gradients" in methods:
        base = np.zeros_like(x) if baseline is None else np.broadcast_to(_nhwc(baseline.expand(-1, -1, *inputs.shape[-2:])), x.shape)
        attr = _integrated_gradients(model, x, np.ascontiguousarray(base), t, steps)
        out["integrated_gradients"] = _unit(torch.from_numpy(attr).sum(-1).abs(), quantile=0.99)
    return out


def filters(module: Any, layer: str | None = None) -> tuple[str, np.ndarray]:
    names = conv_layers(module.keras_model)
    if not names:
        raise CnnkitError("the model has no Conv2D layer")
    name = layer or names[0]
    if name not in names:
        raise CnnkitError(f"no conv layer {name!r}; conv layers: {', '.join(names)}")
    kernel = np.asarray(module.keras_model.get_layer(name).get_weights()[0], dtype=np.float32)
    return name, np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, kh, kw)


def feature_maps(module: Any, inputs: torch.Tensor, layer: Any = None) -> tuple[str, np.ndarray]:
    model = module.keras_model
    name = resolve_layer(model, layer, which="first")
    acts, _ = _tapped(model, name)(_nhwc(inputs), training=False)
    return name, np.ascontiguousarray(np.asarray(acts, dtype=np.float32).transpose(0, 3, 1, 2))
