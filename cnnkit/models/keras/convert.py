"""Weights across frameworks: a Keras twin's weights <-> the PyTorch model's state_dict.

The layers carry the PyTorch module names (see ``models.py``), so the mapping is by name; only
the layouts differ: conv kernels (kh, kw, in, out) vs (out, in, kh, kw), dense (in, out) vs (out, in).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

_BN = ("gamma", "beta", "moving_mean", "moving_variance")
_BN_TORCH = ("weight", "bias", "running_mean", "running_var")


def _layer_arrays(layer: Any) -> dict[str, np.ndarray]:
    """One Keras layer's weights under their PyTorch names (without the module prefix)."""
    kind = type(layer).__name__
    w = [np.asarray(v) for v in layer.get_weights()]
    if kind == "Conv2D":
        out = {"weight": w[0].transpose(3, 2, 0, 1)}
    elif kind == "Dense":
        out = {"weight": w[0].T}
    elif kind == "BatchNormalization":
        return dict(zip(_BN_TORCH, w))
    else:
        return {}
    if len(w) > 1:
        out["bias"] = w[1]
    return out


def keras_to_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The state_dict of the PyTorch model that computes what ``model`` computes."""
    state: dict[str, torch.Tensor] = {}
    for layer in model.layers:
        for key, arr in _layer_arrays(layer).items():
            state[f"{layer.name}.{key}"] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if type(layer).__name__ == "BatchNormalization":
            state[f"{layer.name}.num_batches_tracked"] = torch.tensor(0)
    return state


def load_state_dict_into_keras(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Copy a PyTorch state_dict into the Keras twin (the inverse of ``keras_to_state_dict``)."""
    for layer in model.layers:
        kind = type(layer).__name__
        def get(k: str, name: str = layer.name) -> Any:
            return state[f"{name}.{k}"].detach().cpu().numpy()

        if kind == "Conv2D":
            ws = [get("weight").transpose(2, 3, 1, 0)] + ([get("bias")] if layer.use_bias else [])
        elif kind == "Dense":
            ws = [get("weight").T] + ([get("bias")] if layer.use_bias else [])
        elif kind == "BatchNormalization":
            ws = [get(k) for k in _BN_TORCH]
        else:
            continue
        layer.set_weights(ws)


def torch_twin(model: Any, spec: dict[str, Any]) -> torch.nn.Module:
    """The PyTorch model of ``spec`` holding ``model``'s weights, in eval mode."""
    from cnnkit.models import build_model

    twin = build_model(spec["name"], spec["num_classes"], spec["in_channels"], spec["image_size"], **spec["kwargs"])
    twin.load_state_dict(keras_to_state_dict(model))
    return twin.eval()
