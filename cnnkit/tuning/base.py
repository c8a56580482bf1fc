"""The configuration a trial trains: the study's shared part, this machine's part, the sampled values.

A study stores the *shared* configuration (data, model, training options that define the
experiment, the seed included: it also fixes a folder's train/val split). Options that only
say how this machine runs (device, threads, data and runs folders, progress bars) are
*local*: each worker takes its own, so machines with different paths or devices can join. The sampled parameters are applied
on top, as dotted targets (``train.lr``, ``data.augment``, ``model.kwargs.width``).
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any

from cnnkit.config import SECTIONS, Config, merge
from cnnkit.errors import CnnkitError
from cnnkit.tuning.space import Space

# Options that describe the machine, not the experiment.
LOCAL: dict[str, frozenset[str]] = {
    "data": frozenset({"data_dir", "download"}),
    "train": frozenset({"device", "threads", "progress", "eval_batch_size", "amp", "channels_last", "compile",
                        "deterministic"}),
    "run": frozenset({"name", "runs_dir", "track", "tracking_uri", "register"}),
}
# Data options a space may search (the rest define which data it is).
TUNABLE_DATA = frozenset({"augment"})


def split(cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(shared, local) parts of a config dict."""
    shared: dict[str, Any] = {}
    local: dict[str, Any] = {}
    for section, values in cfg.items():
        for key, value in values.items():
            part = local if key in LOCAL.get(section, ()) else shared
            part.setdefault(section, {})[key] = copy.deepcopy(value)
    return shared, local


def set_target(cfg: dict[str, Any], target: str, value: Any) -> None:
    """``set_target(d, "model.kwargs.width", 48)`` sets ``d["model"]["kwargs"]["width"]``."""
    *path, last = target.split(".")
    node = cfg
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value


def targets(space: Space, model_options: dict[str, Any]) -> dict[str, str]:
    """Where each parameter goes in the config; an unknown name is an error that lists the known ones."""
    train = [f.name for f in dataclasses.fields(SECTIONS["train"]) if f.name not in LOCAL["train"]]
    out = {}
    for name in space.params:
        if name in train:
            out[name] = f"train.{name}"
        elif name in TUNABLE_DATA:
            out[name] = f"data.{name}"
        elif name in model_options:
            out[name] = f"model.kwargs.{name}"
        else:
            known = ", ".join(sorted({*train, *TUNABLE_DATA, *model_options}))
            raise CnnkitError(f"unknown parameter {name!r} in the space; tunable: {known}")
    return out


def apply(shared: dict[str, Any], local: dict[str, Any], overrides: dict[str, Any]) -> Config:
    """The validated Config of a trial: shared < local < {target: sampled value}."""
    cfg = merge(copy.deepcopy(shared), copy.deepcopy(local))
    for target, value in overrides.items():
        set_target(cfg, target, value)
    return Config.from_dict(cfg)


def conflicts(stored: dict[str, Any], explicit: dict[str, Any]) -> list[str]:
    """Shared options that ``explicit`` (this command's flags) sets differently from the study."""
    resolved = Config.from_dict(merge(copy.deepcopy(stored), explicit)).to_dict()
    mine, _ = split(resolved)
    out = []
    for section, values in mine.items():
        for key, value in values.items():
            theirs = stored.get(section, {}).get(key)
            if value != theirs:
                out.append(f"{section}.{key}: the study has {theirs!r}, this command {value!r}")
    return out


def _option_type_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) == isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return default is None or isinstance(value, type(default))


def validate_values(space: Space, where: dict[str, str], shared: dict[str, Any], local: dict[str, Any],
                    model_options: dict[str, Any]) -> None:
    """Every endpoint and choice must make a valid config (the config's own checks name the problem)."""
    for p in space.params.values():
        target = where[p.name]
        for value in p.values_to_check():
            if target.startswith("model.kwargs."):
                default = model_options[p.name]
                if not _option_type_ok(default, value):
                    raise CnnkitError(f"parameter {p.name!r}: the model option takes values like {default!r}; got {value!r}")
            try:
                apply(shared, local, {target: value})
            except CnnkitError as exc:
                raise CnnkitError(f"parameter {p.name!r}: {exc}") from None


def check_model_extremes(space: Space, where: dict[str, str], cfg: Config, num_classes: int, channels: int,
                         image_size: int) -> None:
    """Build the model at each model option's extremes: the builder's own checks name a bad range."""
    from cnnkit.models import build_model

    for p in space.params.values():
        if not where[p.name].startswith("model.kwargs."):
            continue
        for value in p.values_to_check():
            kwargs = {**cfg.model.kwargs, p.name: value}
            try:
                build_model(cfg.model.name, num_classes, channels, image_size, cfg.model.pretrained, **kwargs)
            except CnnkitError as exc:
                raise CnnkitError(f"parameter {p.name!r}: {exc}") from None


def largest(space: Space, name: str) -> Any:
    """The largest value a numeric or numeric-choice parameter can take (None if absent)."""
    p = space.params.get(name)
    if p is None:
        return None
    values = p.values_to_check()
    return max(values) if all(isinstance(v, (int, float)) for v in values) else None


def model_options(name: str) -> dict[str, Any]:
    """The builder options of a registered model ({} for tv:/timm: models)."""
    from cnnkit.models import MODELS, model_names

    if name.startswith(("tv:", "timm:")) or name not in model_names():
        return {}
    params = inspect.signature(MODELS.get(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
