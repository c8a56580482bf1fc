"""The search space: which hyperparameters a study samples, and from which ranges.

A parameter is named as users already know it: a training option (``lr``, ``batch_size``,
``optimizer``, ``epochs``...), ``augment``, or an option of the model's builder (``width``,
``dropout``). The YAML space file (``cnnkit tune --space FILE``):

    extends: default          # optional: start from the model family's default space
    params:
      optimizer: {choices: [sgd, adamw]}
      lr: {log: true, by: optimizer, ranges: {sgd: [0.01, 0.5], adamw: [1.0e-4, 1.0e-2]}}
      weight_decay: {low: 1.0e-5, high: 1.0e-2, log: true}
      width: {low: 16, high: 64, step: 8}     # integers: an int parameter
      dropout: null                           # with extends: remove a default parameter

``choices`` makes a categorical parameter; ``low``/``high`` a numeric one (int when both are
integers, or say ``type: int|float``), with ``log`` or ``step``. ``by: P`` gives a numeric
parameter one range per choice of the categorical parameter P; Optuna then sees one parameter
per choice (``lr_sgd``, ``lr_adamw``), since an SGD learning rate and an AdamW one are different
quantities. This module checks the format and the ranges' shape; ``base.validate_space``
checks the values against the config and the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from cnnkit.errors import CnnkitError

KINDS = ("float", "int", "categorical")
_PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "by", "ranges"}
_FILE_KEYS = {"extends", "params"}


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter; ``ranges`` holds ``(choice, low, high)`` when ``by`` is set."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    by: str | None = None
    ranges: tuple[tuple[Any, float, float], ...] = ()

    def bounds(self) -> list[tuple[str, float, float]]:
        """(optuna name, low, high) of each numeric range this parameter can be sampled from."""
        if self.by is not None:
            return [(f"{self.name}_{c}", lo, hi) for c, lo, hi in self.ranges]
        return [] if self.kind == "categorical" else [(self.name, self.low, self.high)]

    def values_to_check(self) -> list[Any]:
        """The extreme values a config must accept (endpoints and every choice)."""
        if self.kind == "categorical":
            return list(self.choices)
        return [v for _, lo, hi in self.bounds() for v in (lo, hi)]

    def suggest(self, trial: Any, sampled: dict[str, Any]) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        name, low, high = self.name, self.low, self.high
        if self.by is not None:
            choice = sampled[self.by]
            name, low, high = next(b for b in self.bounds() if b[0] == f"{self.name}_{choice}")
        if self.kind == "int":
            return trial.suggest_int(name, int(low), int(high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(low), float(high), step=self.step, log=self.log)

    def to_dict(self) -> dict[str, Any]:
        """The canonical form, stored with the study and compared when a study is joined."""
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.kind, "log": self.log}
        if self.by is not None:
            out.update(by=self.by, ranges={str(c): [lo, hi] for c, lo, hi in self.ranges})
        else:
            out.update(low=self.low, high=self.high)
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Space:
    params: dict[str, Param] = field(default_factory=dict)

    def ordered(self) -> list[Param]:
        """Parents (``by`` targets) before the parameters that depend on them."""
        return sorted(self.params.values(), key=lambda p: (p.by is not None, p.name))

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Sample every parameter for an Optuna trial: {space name: value}."""
        sampled: dict[str, Any] = {}
        for p in self.ordered():
            sampled[p.name] = p.suggest(trial, sampled)
        return sampled

    def to_dict(self) -> dict[str, Any]:
        return {name: self.params[name].to_dict() for name in sorted(self.params)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Space:
        """From the canonical (or YAML ``params``) form; errors name the parameter."""
        return cls(_parse_params(raw))

    def numeric_count(self) -> int:
        return sum(p.kind != "categorical" for p in self.params.values())


def _num(value: Any, name: str, what: str) -> float:
    # PyYAML reads "1e-3" (no dot) as a string; accept it rather than make users write 1.0e-3.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CnnkitError(f"parameter {name!r}: {what} must be a number; got {value!r}")
    return value


def _kind(spec: dict[str, Any], name: str, numbers: list[float]) -> str:
    kind = spec.get("type")
    if kind is not None and kind not in KINDS:
        raise CnnkitError(f"parameter {name!r}: type must be one of {', '.join(KINDS)}; got {kind!r}")
    if "choices" in spec:
        if kind not in (None, "categorical"):
            raise CnnkitError(f"parameter {name!r}: choices make a categorical parameter, not {kind}")
        return "categorical"
    if kind == "categorical":
        raise CnnkitError(f"parameter {name!r}: a categorical parameter needs choices")
    if kind is None:
        return "int" if all(isinstance(v, int) for v in numbers) else "float"
    if kind == "int" and not all(float(v).is_integer() for v in numbers):
        raise CnnkitError(f"parameter {name!r}: type int needs integer bounds and step")
    return kind


def _check_range(name: str, low: float, high: float, log: bool, step: float | None) -> None:
    if low > high:
        raise CnnkitError(f"parameter {name!r}: impossible range, low {low} > high {high}")
    if log and low <= 0:
        raise CnnkitError(f"parameter {name!r}: a log range needs low > 0; got {low}")
    if step is not None:
        if log:
            raise CnnkitError(f"parameter {name!r}: log and step cannot be combined")
        if step <= 0:
            raise CnnkitError(f"parameter {name!r}: step must be > 0; got {step}")
        count = (high - low) / step
        if abs(count - round(count)) > 1e-9 * max(1.0, count):
            raise CnnkitError(f"parameter {name!r}: step {step} does not divide the range {low}..{high}")


def _categorical(name: str, spec: dict[str, Any]) -> Param:
    extra = sorted(set(spec) & {"low", "high", "log", "step", "by", "ranges"})
    if extra:
        raise CnnkitError(f"parameter {name!r}: {extra[0]} does not apply to a parameter with choices")
    choices = spec["choices"]
    if not isinstance(choices, list) or not choices:
        raise CnnkitError(f"parameter {name!r}: choices must be a non-empty list")
    for c in choices:
        if not isinstance(c, (str, int, float, bool)):
            raise CnnkitError(f"parameter {name!r}: choice {c!r} is not a plain value")
    if len(set(map(repr, choices))) != len(choices):
        raise CnnkitError(f"parameter {name!r}: choices repeat a value")
    return Param(name, "categorical", choices=tuple(choices))


def _conditional(name: str, spec: dict[str, Any]) -> Param:
    ranges = spec.get("ranges")
    if not isinstance(ranges, dict) or not ranges:
        raise CnnkitError(f"parameter {name!r}: 'by' needs 'ranges', a mapping of choice -> [low, high]")
    if "low" in spec or "high" in spec:
        raise CnnkitError(f"parameter {name!r}: with 'by', give 'ranges' instead of low/high")
    parsed = []
    for choice, pair in ranges.items():
        if not isinstance(pair, list) or len(pair) != 2:
            raise CnnkitError(f"parameter {name!r}: range for {choice!r} must be [low, high]")
        parsed.append((choice, _num(pair[0], name, "low"), _num(pair[1], name, "high")))
    step = _num(spec["step"], name, "step") if spec.get("step") is not None else None
    kind = _kind(spec, name, [v for _, lo, hi in parsed for v in (lo, hi)] + ([step] if step is not None else []))
    log = bool(spec.get("log", False))
    cast = int if kind == "int" else float
    for choice, lo, hi in parsed:
        _check_range(f"{name}_{choice}", lo, hi, log, step)
    return Param(name, kind, log=log, step=step, by=str(spec["by"]),
                 ranges=tuple((c, cast(lo), cast(hi)) for c, lo, hi in parsed))


def parse_param(name: str, spec: Any) -> Param:
    """One parameter from its YAML mapping; errors name the parameter and the problem."""
    if not isinstance(spec, dict):
        raise CnnkitError(f"parameter {name!r} must be a mapping (e.g. {{low: 0.0, high: 0.5}}); got {spec!r}")
    unknown = sorted(set(spec) - _PARAM_KEYS)
    if unknown:
        raise CnnkitError(f"parameter {name!r}: unknown key {unknown[0]!r}; known: {', '.join(sorted(_PARAM_KEYS))}")
    if "log" in spec and not isinstance(spec["log"], bool):
        raise CnnkitError(f"parameter {name!r}: log must be true or false")
    if "choices" in spec:
        return _categorical(name, spec)
    if "by" in spec:
        return _conditional(name, spec)
    if "low" not in spec or "high" not in spec:
        raise CnnkitError(f"parameter {name!r}: needs low and high (or choices)")
    low, high = _num(spec["low"], name, "low"), _num(spec["high"], name, "high")
    step = _num(spec["step"], name, "step") if spec.get("step") is not None else None
    kind = _kind(spec, name, [low, high] + ([step] if step is not None else []))
    log = bool(spec.get("log", False))
    _check_range(name, low, high, log, step)
    cast = int if kind == "int" else float
    return Param(name, kind, cast(low), cast(high), log, cast(step) if step is not None else None)


def _parse_params(raw: Any) -> dict[str, Param]:
    if not isinstance(raw, dict):
        raise CnnkitError("params must be a mapping of parameter name -> range")
    params = {str(name): parse_param(str(name), spec) for name, spec in raw.items() if spec is not None}
    return _check_dependencies(params)


def _check_dependencies(params: dict[str, Param]) -> dict[str, Param]:
    """Check each ``by`` against its parent; return the params with ranges keyed by the parent's values."""
    out = dict(params)
    for p in params.values():
        if p.by is None:
            continue
        parent = params.get(p.by)
        if parent is None or parent.kind != "categorical":
            raise CnnkitError(f"parameter {p.name!r}: by {p.by!r} must name a categorical parameter of the space")
        given, needed = {str(c) for c, _, _ in p.ranges}, {str(c) for c in parent.choices}
        if given != needed:
            missing, extra = sorted(needed - given), sorted(given - needed)
            what = f"no range for {missing[0]!r}" if missing else f"a range for {extra[0]!r}, which {p.by} cannot be"
            raise CnnkitError(f"parameter {p.name!r}: {what}")
        # Key the ranges by the parent's actual values (YAML keys are strings; choices may not be).
        by_str = {str(c): c for c in parent.choices}
        out[p.name] = replace(p, ranges=tuple((by_str[str(c)], lo, hi) for c, lo, hi in p.ranges))
    return out


def load_space_file(path: str | Path, default: Space) -> Space:
    """Read and check a space file; ``extends: default`` merges it into ``default``."""
    p = Path(path)
    where = f"space file {p}"
    if not p.is_file():
        raise CnnkitError(f"{where} not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise CnnkitError(f"{where} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise CnnkitError(f"{where} must be a mapping with 'params' (and optionally 'extends: default')")
    unknown = sorted(set(raw) - _FILE_KEYS)
    if unknown:
        raise CnnkitError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(_FILE_KEYS))}")
    extends = raw.get("extends")
    if extends not in (None, "default", "none"):
        raise CnnkitError(f"{where}: extends must be 'default' or 'none'; got {extends!r}")
    params_raw = raw.get("params") or {}
    if not isinstance(params_raw, dict):
        raise CnnkitError(f"{where}: params must be a mapping of parameter name -> range")
    try:
        if extends == "default":
            merged = {n: p for n, p in default.params.items() if n not in params_raw}
            merged.update({str(n): parse_param(str(n), s) for n, s in params_raw.items() if s is not None})
            own = _check_dependencies(merged)
        else:
            own = _parse_params(params_raw)
    except CnnkitError as exc:
        raise CnnkitError(f"{where}: {exc}") from None
    if not own:
        raise CnnkitError(f"{where}: the space has no parameters")
    return Space(own)
