"""What a trained CNN looks at: filters, feature maps, Grad-CAM, integrated gradients, errors.

Tensors in, numpy arrays out, no file I/O, so the CLI, the report and the server share them.
Attributions come from Captum (``LayerGradCam``, ``IntegratedGradients``); this module only picks
layers, resolves targets and scales the maps to [0, 1]. Captum is imported inside the functions.

Attribution runs on a private copy of the model with in-place activations turned off: an
in-place ReLU right after the hooked layer would overwrite the activations Captum saved (the
Grad-CAM of ``conv`` would silently become the Grad-CAM of ``relu(conv)``), and copying also
leaves the caller's model untouched while other threads use it for inference.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import CnnkitError

METHODS = ("gradcam", "integrated_gradients")

# Modules that keep the shape and act per element (or per channel): the rectified feature maps
# Grad-CAM is defined on are the output of the last conv *after* these.
_ELEMENTWISE = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU,
                nn.SiLU, nn.Hardswish, nn.Mish, nn.PReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout, nn.Dropout2d)


@dataclass(frozen=True)
class Call:
    """One module call seen in a traced forward pass (in completion order)."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    leaf: bool


def _is_keras(model: Any) -> bool:
    """A Keras run's model (cnnkit.models.keras.module.KerasModule): explained in TensorFlow."""
    return getattr(model, "framework", "torch") == "keras"


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _work_copy(model: nn.Module) -> nn.Module:
    """A private eval-mode copy with in-place ops off (see the module docstring for why)."""
    work = copy.deepcopy(model).eval()
    for m in work.modules():
        if hasattr(m, "inplace") and isinstance(m.inplace, bool):
            m.inplace = False
    return work


def _batch(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise CnnkitError(f"explain needs a normalized float batch (N, C, H, W), got {shape}")
    # clone() outside inference mode: an inference tensor cannot take part in autograd.
    with torch.inference_mode(False):
        return inputs.detach().to(_device(model), torch.float32).clone()


def trace(model: nn.Module, inputs: torch.Tensor) -> tuple[list[Call], torch.Tensor]:
    """Run ``model`` once with hooks on every submodule: the calls in completion order, and the logits."""
    calls: list[Call] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        leaf = next(module.children(), None) is None

        def hook(mod: nn.Module, _inp: Any, out: Any, name: str = name, leaf: bool = leaf) -> None:
            if isinstance(out, torch.Tensor):
                calls.append(Call(name, mod, tuple(out.shape), leaf))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model(inputs)
    finally:
        for h in handles:
            h.remove()
    return calls, logits


def spatial_layers(calls: Sequence[Call]) -> list[str]:
    """Names of the modules whose output is a (N, C, H, W) map: the layers one can explain."""
    seen: dict[str, None] = {}
    for c in calls:
        if len(c.shape) == 4:
            seen.setdefault(c.name)
    return list(seen)


def conv_layers(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _block_output(calls: Sequence[Call], start: int) -> str:
    """From the conv at ``calls[start]``, follow the shape-keeping modules that complete right after
    it (norm, activation, and the containers that end with them) and name the last one called once.

    So the default layer of a conv-BN-ReLU stage is the stage (its rectified output), of a ResNet
    the last block, and of a plain conv+ReLU net the ReLU.
    """
    conv = calls[start]
    counts: dict[str, int] = {}
    for c in calls:
        counts[c.name] = counts.get(c.name, 0) + 1
    best = conv.name
    for c in calls[start + 1:]:
        # A container holding the conv (an Inception block concatenating branches) may change the
        # channel count, never the map size; a leaf must keep the shape and act per element.
        ancestor = conv.name.startswith(c.name + ".") and c.shape[:1] + c.shape[2:] == conv.shape[:1] + conv.shape[2:]
        elementwise = c.leaf and isinstance(c.module, _ELEMENTWISE) and c.shape == conv.shape
        if len(c.shape) != 4 or not (ancestor or elementwise):
            break
        if counts[c.name] == 1:
            best = c.name
    return best


def default_layer(calls: Sequence[Call], which: str = "last") -> str:
    """The rectified output of the last (or first) convolution executed in the forward pass."""
    idx = [i for i, c in enumerate(calls) if isinstance(c.module, nn.Conv2d)]
    if not idx:
        raise CnnkitError("the model has no Conv2d layer to explain")
    return _block_output(calls, idx[-1] if which == "last" else idx[0])


def resolve_layer(model: nn.Module, calls: Sequence[Call], layer: Any, which: str = "last") -> str:
    """A layer given as a name, a module of ``model``, or None (the default) -> its name."""
    if layer is None or layer == "":
        return default_layer(calls, which)
    if isinstance(layer, nn.Module):
        for name, m in model.named_modules():
            if m is layer and name:
                return name
        raise CnnkitError("the layer given is not a submodule of the model")
    names = spatial_layers(calls)
    if layer not in names:
        raise CnnkitError(f"no layer {layer!r} with a spatial output; layers: {', '.join(names)}")
    return str(layer)


def _targets(logits: torch.Tensor, target: Any) -> torch.Tensor:
    """None -> the predicted class of each image; an int -> that class for all; else one per image."""
    n, k = logits.shape
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, dtype=torch.long, device=logits.device).flatten()
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise CnnkitError(f"{t.numel()} targets for {n} images")
    if bool(((t < 0) | (t >= k)).any()):
        raise CnnkitError(f"target class out of range: the model has {k} classes (0..{k - 1})")
    return t.clone()


def _unit(maps: torch.Tensor, quantile: float | None = None) -> np.ndarray:
    """Scale each map to [0, 1] by its max (or a high quantile, clipping outliers); all-zero stays zero."""
    flat = maps.detach().flatten(1).double()
    scale = flat.max(1).values if quantile is None else torch.quantile(flat, quantile, dim=1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    out = (flat / scale[:, None]).clamp(0, 1).view_as(maps)
    return out.float().cpu().numpy()


def _module(model: nn.Module, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


def gradcam(model: nn.Module, inputs: torch.Tensor, target: Any = None, layer: Any = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) of a normalized batch: float32 (N, H, W) in [0, 1].

    ``target``: None = each image's predicted class, an int, or one class per image.
    ``layer``: None = the last conv layer's rectified output (see ``default_layer``), a module
    name (``"features.6"``) or the module itself. Maps are upsampled bilinearly to the input size.
    """
    return explain_batch(model, inputs, target, layer, methods=("gradcam",))["gradcam"]


def integrated_gradients(model: nn.Module, inputs: torch.Tensor, target: Any = None,
                         baseline: torch.Tensor | None = None, steps: int = 32) -> np.ndarray:
    """Integrated gradients (Sundararajan et al. 2017): |sum over channels|, float32 (N, H, W) in [0, 1].

    ``baseline`` is the "absence of signal" image in normalized space (None = zeros, i.e. the mean
    image; the CLI passes black). Scaled by each map's 99th percentile so one pixel cannot wash out the rest.
    """
    out = explain_batch(model, inputs, target, None, methods=("integrated_gradients",), baseline=baseline, steps=steps)
    return out["integrated_gradients"]


def explain_batch(model: nn.Module, inputs: torch.Tensor, target: Any = None, layer: Any = None,
                  methods: Sequence[str] = ("gradcam", "integrated_gradients"),
                  baseline: torch.Tensor | None = None, steps: int = 32) -> dict[str, Any]:
    """Predictions and attribution maps in one pass: {"probabilities" (N, K), "targets" (N,),
    "layer", and one (N, H, W) [0, 1] array per method}."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise CnnkitError(f"unknown attribution method {min(unknown)!r}; methods: {', '.join(METHODS)}")
    if _is_keras(model):
        from cnnkit.explain import keras as kx

        return kx.explain_batch(model, inputs, target, layer, methods, baseline, steps)
    from captum.attr import IntegratedGradients, LayerGradCam

    work = _work_copy(model)
    x = _batch(work, inputs)
    with torch.inference_mode(False), torch.enable_grad():
        calls, logits = trace(work, x)
        targets = _targets(logits, target)
        name = resolve_layer(model, calls, layer)
        out: dict[str, Any] = {"probabilities": torch.softmax(logits.float(), 1).cpu().numpy(),
                               "targets": targets.cpu().numpy(), "layer": name}
        if "gradcam" in methods:
            cam = LayerGradCam(work, _module(work, name)).attribute(x, target=targets, relu_attributions=True)
            out["gradcam"] = _unit(F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
        if "integrated_gradients" in methods:
            base = torch.zeros_like(x) if baseline is None else baseline.to(x.device, x.dtype).expand_as(x)
            attr = IntegratedGradients(work).attribute(x, base, target=targets, n_steps=steps, internal_batch_size=256)
            out["integrated_gradients"] = _unit(attr.sum(1).abs(), quantile=0.99)
    return out



def pixel_baseline(pre: dict[str, Any], value: float = 0.0) -> torch.Tensor:
    """A constant image (0 = black) in a run's normalized space, shape (1, C, 1, 1), for IG."""
    mean = torch.tensor(pre["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(pre["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return (value - mean) / std


def filters(model: nn.Module, layer: str | None = None) -> tuple[str, np.ndarray]:
    """The kernels of a Conv2d (default: the first one): (name, float32 (out, in, kh, kw))."""
    if _is_keras(model):
        from cnnkit.explain import keras as kx

        return kx.filters(model, layer)
    names = conv_layers(model)
    if not names:
        raise CnnkitError("the model has no Conv2d layer")
    name = layer or names[0]
    if name not in names:
        raise CnnkitError(f"no conv layer {name!r}; conv layers: {', '.join(names)}")
    return name, _module(model, name).weight.detach().float().cpu().numpy()


def feature_maps(model: nn.Module, inputs: torch.Tensor, layer: Any = None) -> tuple[str, np.ndarray]:
    """Activations of a layer (default: the first conv's rectified output): (name, float32 (N, C, h, w))."""
    if _is_keras(model):
        from cnnkit.explain import keras as kx

        return kx.feature_maps(model, inputs, layer)
    work = _work_copy(model)
    x = _batch(work, inputs)
    calls, _ = trace(work, x)
    name = resolve_layer(model, calls, layer, which="first")
    seen: list[torch.Tensor] = []
    handle = _module(work, name).register_forward_hook(lambda _m, _i, o: seen.append(o.detach()))
    try:
        with torch.no_grad():
            work(x)
    finally:
        handle.remove()
    return name, seen[0].float().cpu().numpy()


def top_losses(log_probs: np.ndarray, labels: np.ndarray, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` images with the highest cross-entropy, highest first, and those losses."""
    losses = -log_probs[np.arange(len(labels)), labels]
    order = np.argsort(-losses, kind="stable")[:k]
    return order, losses[order]


def confused_pairs(confusion: np.ndarray, k: int = 5) -> list[tuple[int, int, int]]:
    """The ``k`` most frequent (true, predicted, count) mistakes, off the diagonal, most first."""
    off = np.array(confusion, dtype=np.int64, copy=True)
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = [(int(i // off.shape[1]), int(i % off.shape[1])) for i in flat]
    return [(t, p, int(off[t, p])) for t, p in pairs if off[t, p] > 0]


def map_summary(m: np.ndarray) -> dict[str, Any]:
    """A few numbers that describe one (H, W) attribution map, for ``--json``."""
    peak = np.unravel_index(int(np.argmax(m)), m.shape)
    total = float(m.sum())
    top = np.sort(m, axis=None)[::-1][: max(1, m.size // 10)]
    return {"peak": [int(peak[0]), int(peak[1])], "mean": round(float(m.mean()), 6),
            "mass_in_top_10pct": round(float(top.sum()) / total, 6) if total > 0 else 0.0}
