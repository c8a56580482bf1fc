"""A loaded Keras run as a callable torch module: the seam the rest of cnnkit sees.

Evaluation, prediction, comparison, reports and the server take a ``LoadedRun.model`` and call
``model(x)`` on a normalized float batch (N, C, H, W) under ``torch.inference_mode``. For a Keras
run that model is a ``KerasModule``: it runs the Keras model itself (one traced ``tf.function``,
channels-last) and hands back torch logits, so every one of those paths measures the Keras
weights, not a copy. Paths that need more than a forward pass ask for ``framework == "keras"``:
explain (Grad-CAM through ``tf.GradientTape``, ``cnnkit.explain.keras``) and the ONNX export
(``torch_twin``, checked against this module's outputs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.keras import import_keras

WEIGHTS = "model.keras"


class KerasModule(nn.Module):
    """``KerasModule(keras_model, spec)(x_nchw) -> logits``; inference only (no autograd through it)."""

    framework = "keras"

    def __init__(self, keras_model: Any, spec: dict[str, Any]) -> None:
        super().__init__()
        import tensorflow as tf

        self.keras_model = keras_model
        self.spec = spec
        # An empty parameter, so code that asks a module for its device (next(parameters())) works.
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        size, channels = spec["image_size"], spec["in_channels"]
        signature = [tf.TensorSpec((None, size, size, channels), tf.float32)]
        self._infer = tf.function(lambda x: keras_model(x, training=False), input_signature=signature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nhwc = x.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
        return torch.from_numpy(np.array(self._infer(nhwc))).to(x.device)

    def __deepcopy__(self, memo: dict[int, Any]) -> KerasModule:
        # Read-only at inference, so a "copy" (the server's BN folding, explain's work copy) may share it.
        return self

    def torch_twin(self) -> nn.Module:
        from cnnkit.models.keras.convert import torch_twin

        return torch_twin(self.keras_model, self.spec)


def load_keras_model(path: Path) -> Any:
    """``model.keras`` with Keras' safe mode on: built-in layers only, no deserialized code."""
    keras = import_keras()
    if not path.is_file():
        raise CnnkitError(f"{path.parent} has no {WEIGHTS}; the Keras run did not finish")
    return keras.saving.load_model(str(path), compile=False, safe_mode=True)


def load_keras_module(run_path: Path, spec: dict[str, Any]) -> KerasModule:
    return KerasModule(load_keras_model(run_path / WEIGHTS), spec).eval()
