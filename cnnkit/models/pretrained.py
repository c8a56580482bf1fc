"""External architectures: ``tv:NAME`` (torchvision) and ``timm:NAME`` (timm), optionally pretrained.

Both libraries are imported only when such a model is asked for. Their weights come from the
local caches (torch hub for torchvision, the Hugging Face cache for most timm models); fetching
them is the libraries' own code. Every way that can fail for a user's reason (unknown name,
weights missing and no network, an option the constructor rejects) becomes one CnnkitError line.
"""
from __future__ import annotations

import difflib
import importlib
import math
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

from cnnkit.errors import CnnkitError

# Where torchvision models keep their output layer; the last Linear (or 1x1 conv, as in
# SqueezeNet) inside the first path that exists is the one to replace.
HEAD_PATHS = ("fc", "classifier", "heads.head", "head", "heads")
# torchvision models whose default aux classifiers would make train-mode forward return a tuple.
_AUX_MODELS = ("googlenet", "inception_v3")

def _import_torchvision() -> ModuleType:
    """Import torchvision lazily; a broken install (e.g. a CUDA torchvision wheel beside a CPU-only
    torch, whose compiled ops cannot load) is reported as one line, not a traceback."""
    try:
        return importlib.import_module("torchvision")
    except ImportError as err:
        raise CnnkitError(f"tv: and timm: models need torchvision, which is not installed ({err})") from None
    except RuntimeError as err:
        raise CnnkitError(f"torchvision cannot be imported ({err}); install matching torch and torchvision wheels") from None


def _import_timm() -> ModuleType:
    _import_torchvision()  # timm imports torchvision; this makes that import work first
    try:
        return importlib.import_module("timm")
    except ImportError as err:
        raise CnnkitError(f"timm: models need timm, which is not installed ({err})") from None


def _unknown(prefix: str, arch: str, known: list[str]) -> CnnkitError:
    close = difflib.get_close_matches(arch, known, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(f'{prefix}:{c}' for c in close)}?" if close else ""
    return CnnkitError(f"unknown {prefix}: architecture {arch!r}{hint}")


def _split(name: str) -> tuple[str, str]:
    prefix, _, arch = name.partition(":")
    if prefix not in _BUILDERS or not arch:
        raise CnnkitError(f"external model names look like tv:NAME or timm:NAME, not {name!r}")
    return prefix, arch


# ----------------------------------------------------------------------------- adapting layers

def adapt_rgb_kernel(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Turn RGB first-conv kernels into ``in_channels`` ones, as timm's adapt_input_conv does.

    One channel: the sum over RGB, so a grey image gives the response its RGB copy would.
    More: the RGB kernels repeated, scaled by 3/in_channels to keep the activations' scale.
    """
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_channels / 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (3 / in_channels)


def _adapt_first_conv(model: nn.Module, in_channels: int, keep_weights: bool, label: str) -> None:
    """Replace the first conv (the stem: modules register in forward order) for in_channels."""
    path, conv = next(((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d)), ("", None))
    if conv is None or conv.in_channels != 3 or conv.groups != 1:
        raise CnnkitError(f"{label}: cannot adapt the first layer to {in_channels} input channels")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode)
    if keep_weights:
        with torch.no_grad():
            new.weight.copy_(adapt_rgb_kernel(conv.weight, in_channels))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    model.set_submodule(path, new)


def _output_layer(model: nn.Module) -> tuple[str, nn.Module]:
    for head_path in HEAD_PATHS:
        try:
            head = model.get_submodule(head_path)
        except AttributeError:
            continue
        layers = [(p, m) for p, m in head.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        if layers:
            path, layer = layers[-1]
            return (f"{head_path}.{path}" if path else head_path), layer
    raise LookupError("no classifier head found")


def replace_head(model: nn.Module, num_classes: int, label: str = "model") -> nn.Module:
    """Give ``model`` a fresh output layer with ``num_classes`` outputs (kept if it already has them)."""
    try:
        path, layer = _output_layer(model)
    except LookupError:
        raise CnnkitError(f"{label}: cannot find its classifier head to set {num_classes} classes") from None
    if isinstance(layer, nn.Linear):
        if layer.out_features != num_classes:
            model.set_submodule(path, nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None))
    elif layer.out_channels != num_classes:
        model.set_submodule(path, nn.Conv2d(layer.in_channels, num_classes, layer.kernel_size, layer.stride,
                                            layer.padding, bias=layer.bias is not None))
    return model


# ----------------------------------------------------------------------------- torchvision

def _tv_weights(tv: ModuleType, arch: str, label: str) -> Any:
    try:
        return tv.models.get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError, KeyError):
        raise CnnkitError(f"{label} has no pretrained weights in torchvision") from None


def _tv_missing_weights(weights: Any, label: str) -> CnnkitError:
    filename = os.path.basename(weights.url)
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    return CnnkitError(f"pretrained weights for {label} are not cached and could not be downloaded: "
                       f"put {filename} (from {weights.url}) in {folder}")


def _build_tv(arch: str, num_classes: int, in_channels: int, pretrained: bool, **kw: Any) -> nn.Module:
    tv = _import_torchvision()
    label = f"tv:{arch}"
    known = tv.models.list_models(module=tv.models)  # classification models only
    if arch not in known:
        raise _unknown("tv", arch, known)
    weights = _tv_weights(tv, arch, label) if pretrained else None
    if arch in _AUX_MODELS:
        kw.setdefault("aux_logits", False)
    try:
        model = tv.models.get_model(arch, weights=weights, **kw)
    except TypeError as err:
        raise CnnkitError(f"{label} does not accept these options {sorted(kw)}: {err}") from None
    except OSError:  # urllib's URLError is an OSError: no cached file and no network
        raise _tv_missing_weights(weights, label) from None
    if in_channels != 3:
        _adapt_first_conv(model, in_channels, keep_weights=pretrained, label=label)
        if getattr(model, "transform_input", False):
            model.transform_input = False  # it re-normalises exactly three RGB channels
    return replace_head(model, num_classes, label)


# ----------------------------------------------------------------------------- timm

def _timm_weights_hint(timm: ModuleType, arch: str) -> str:
    cfg = timm.models.get_pretrained_cfg(arch)
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        from huggingface_hub import constants

        return f"the Hugging Face repo {hub_id!r} in the cache {constants.HF_HUB_CACHE}"
    url = getattr(cfg, "url", None) or "its URL"
    return f"{os.path.basename(url)} in {os.path.join(torch.hub.get_dir(), 'checkpoints')}"


def _is_download_error(err: Exception) -> bool:
    """True for the errors timm/huggingface_hub raise when weights are neither cached nor reachable."""
    if isinstance(err, OSError):  # URLError, LocalEntryNotFoundError, ConnectionError...
        return True
    names = {cls.__name__ for cls in type(err).__mro__}
    # huggingface_hub's errors and the HTTP client's, matched by name to avoid importing them
    return bool(names & {"HfHubHTTPError", "LocalEntryNotFoundError", "OfflineModeIsEnabled",
                         "HTTPError", "ConnectError", "TimeoutException", "RequestError"})


def _build_timm(arch: str, num_classes: int, in_channels: int, pretrained: bool, **kw: Any) -> nn.Module:
    timm = _import_timm()
    label = f"timm:{arch}"
    if not timm.is_model(arch):
        raise _unknown("timm", arch, timm.list_models())
    try:
        return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels, **kw)
    except TypeError as err:
        raise CnnkitError(f"{label} does not accept these options {sorted(kw)}: {err}") from None
    except Exception as err:  # noqa: BLE001 - narrowed just below
        if not (pretrained and _is_download_error(err)):
            raise
        raise CnnkitError(f"pretrained weights for {label} are not cached and could not be downloaded: "
                          f"put {_timm_weights_hint(timm, arch)}") from None


_BUILDERS: dict[str, Callable[..., nn.Module]] = {"tv": _build_tv, "timm": _build_timm}


def _check_input_size(model: nn.Module, name: str, in_channels: int, image_size: int) -> None:
    """One eval-mode forward of a blank image, so a size the model cannot take (a ViT's fixed
    patch grid, say) is a clear error now rather than an assertion deep inside training."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size))
    except (RuntimeError, AssertionError, ValueError) as err:
        hint = input_size_hint(name)
        native = f"; it was made for {hint}x{hint}" if hint else ""
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CnnkitError(f"{name} cannot take {image_size}x{image_size} inputs ({reason}){native}") from None
    finally:
        model.train(was_training)


def build_external(name: str, num_classes: int, in_channels: int, image_size: int,
                   pretrained: bool = False, **kw: Any) -> nn.Module:
    """Build ``tv:NAME`` or ``timm:NAME`` with ``num_classes`` outputs and ``in_channels`` inputs.

    ``image_size`` is not passed on: most of these models pool adaptively, and the size they were
    trained at is given by input_size_hint(); a size the model cannot take at all is a
    CnnkitError. Extra keywords go to the library's constructor.
    """
    prefix, arch = _split(name)
    model = _BUILDERS[prefix](arch, num_classes, in_channels, bool(pretrained), **kw)
    _check_input_size(model, name, in_channels, image_size)
    return model


def input_size_hint(name: str) -> int | None:
    """The input size an external architecture was trained at (224 for most), or None if unknown.

    Registered cnnkit models (no prefix) take any size, so they give None too.
    """
    if not name.startswith(tuple(f"{p}:" for p in _BUILDERS)):
        return None
    prefix, arch = _split(name)
    if prefix == "tv":
        tv = _import_torchvision()
        if arch not in tv.models.list_models(module=tv.models):
            raise _unknown("tv", arch, tv.models.list_models(module=tv.models))
        try:
            crop = tv.models.get_model_weights(arch).DEFAULT.transforms().crop_size
        except (ValueError, AttributeError, KeyError):
            return None
        return int(crop[0])
    timm = _import_timm()
    if not timm.is_model(arch):
        raise _unknown("timm", arch, timm.list_models())
    cfg = timm.models.get_pretrained_cfg(arch)
    size = getattr(cfg, "input_size", None)
    return int(size[-1]) if size else None

