"""The model zoo: a registry of builders, one file per family.

Every builder has the signature ``builder(num_classes, in_channels, image_size, **kw) -> nn.Module``
and returns a plain ``nn.Module`` mapping float ``(N, in_channels, image_size, image_size)``
to logits ``(N, num_classes)``. ``tv:NAME`` and ``timm:NAME`` reach torchvision and timm.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from cnnkit.models.registry import Registry

ModelBuilder = Callable[..., nn.Module]

# Filled by the @MODELS.register decorators of the family modules, once, when they are
# first imported by _load_families(); read-only afterwards.
MODELS: Registry[ModelBuilder] = Registry("model")

_FAMILIES = ("cnn", "lenet", "alexnet", "vgg", "googlenet", "resnet", "efficientnet", "airbench")
_EXTERNAL_PREFIXES = ("tv:", "timm:")


def _load_families() -> None:
    for family in _FAMILIES:
        importlib.import_module(f"cnnkit.models.{family}")


def model_names() -> list[str]:
    """The registered names (the external ``tv:``/``timm:`` prefixes are not listed)."""
    _load_families()
    return MODELS.names()


def build_model(
    name: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, or an external one (``tv:resnet50``, ``timm:convnext_tiny``)."""
    if name.startswith(_EXTERNAL_PREFIXES):
        from cnnkit.models import pretrained as external

        return external.build_external(name, num_classes, in_channels, image_size, pretrained, **kwargs)
    _load_families()
    builder = MODELS.get(name)
    loader = getattr(builder, "load_pretrained", None)  # set by families that ship weights
    if pretrained and loader is None:
        from cnnkit.errors import CnnkitError

        with_weights = ", ".join(n for n in MODELS.names() if hasattr(MODELS.get(n), "load_pretrained"))
        raise CnnkitError(f"--pretrained needs {with_weights}, or a tv:NAME or timm:NAME model, not {name!r}")
    _check_options(name, builder, kwargs)
    model = builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)
    return loader(model) if pretrained else model


def pretrained_input(name: str) -> dict[str, Any] | None:
    """For registered models that ship weights: the input size and mean/std those weights expect."""
    if name.startswith(_EXTERNAL_PREFIXES):
        return None
    _load_families()
    return getattr(MODELS.get(name), "pretrained_input", None) if name in MODELS else None


def describe(name: str) -> str:
    """One line for ``cnnkit models``: the builder's summary, then its options and their defaults."""
    if name.startswith(_EXTERNAL_PREFIXES):
        library, _, arch = name.partition(":")
        return f"{'torchvision' if library == 'tv' else 'timm'} model {arch!r}; --pretrained loads its weights"
    _load_families()
    builder = MODELS.get(name)
    doc = (builder.__doc__ or "").strip()
    summary = doc.splitlines()[0] if doc else name
    options = _options(builder)
    if not options:
        return summary
    return f"{summary} [options: {', '.join(f'{k}={v!r}' for k, v in options.items())}]"


def _options(builder: ModelBuilder) -> dict[str, Any]:
    """A builder's model options: its keyword-only parameters and their defaults."""
    params = inspect.signature(builder).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_options(name: str, builder: ModelBuilder, kwargs: dict[str, Any]) -> None:
    # A misspelt option would otherwise surface as a TypeError, i.e. as a bug rather than bad input.
    unknown = sorted(set(kwargs) - set(_options(builder)))
    if unknown:
        from cnnkit.errors import CnnkitError

        known = ", ".join(_options(builder)) or "none"
        raise CnnkitError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; its options: {known}")


def resolved_options(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The builder's options with their defaults filled in, as stored in a run's model.json, so a
    later change of a default never changes how an existing run is rebuilt."""
    if name.startswith(_EXTERNAL_PREFIXES):
        return dict(kwargs)
    _load_families()
    builder = MODELS.get(name)
    _check_options(name, builder, kwargs)
    return {**_options(builder), **kwargs}
