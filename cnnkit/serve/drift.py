"""A sliding window of recent answers compared with the run's ``reference.json`` (PSI per statistic).

For each served model version, the last ``window`` images' statistics (top-1 confidence,
brightness, contrast, edge energy: ``cnnkit.evaluation.reference``) and predicted classes are
kept; every ``every`` images, once ``min_count`` are in the window, the population stability
index of each statistic against the reference deciles is recomputed, and of the predicted-class
mix against the mix it predicted on the validation split. The alert turns on when any score reaches ``threshold`` and off
again only when all are below ``clear`` (hysteresis, so a window hovering at the threshold does
not flap). Why PSI and not a two-sample test: see ``cnnkit.evaluation.reference``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.evaluation.reference import STATISTICS, psi, shares

CLASS_MIX = "class_mix"


@dataclass(frozen=True)
class DriftOptions:
    window: int = 500  # images compared with the reference
    min_count: int = 200  # no score before the window holds this many (PSI of few images is noise)
    every: int = 25  # recompute after this many new images
    threshold: float = 0.25  # PSI at which the alert turns on (the conventional "significant shift")
    clear: float = 0.2  # ... and below which, for every statistic, it turns off again


def options_for(monitoring: Any) -> DriftOptions:
    """The window the server keeps for ``Monitoring`` settings (also what ``cnnkit monitor`` replays)."""
    return DriftOptions(window=monitoring.drift_window, min_count=min(200, monitoring.drift_window),
                        threshold=monitoring.drift_threshold, clear=0.8 * monitoring.drift_threshold)


@dataclass(frozen=True)
class Change:
    """The alert flipped: ``on`` is its new state; ``scores`` what made it flip."""

    on: bool
    scores: dict[str, float]


class DriftWindow:
    """The window of one model version. Not thread-safe: the event loop is its only caller."""

    def __init__(self, reference: dict[str, Any], options: DriftOptions) -> None:
        self.reference, self.options = reference, options
        self.values = {name: deque[float](maxlen=options.window) for name in STATISTICS}
        self.predicted = deque[int](maxlen=options.window)
        self.scores: dict[str, float] = {}
        self.alert = False
        self._since = 0

    def add(self, stats: dict[str, np.ndarray], predicted: np.ndarray) -> Change | None:
        """Add a batch of images' statistics; a Change when the alert flipped."""
        for name in STATISTICS:
            self.values[name].extend(float(v) for v in stats[name])
        self.predicted.extend(int(c) for c in predicted)
        self._since += len(predicted)
        if len(self.predicted) < self.options.min_count or self._since < self.options.every:
            return None
        self._since = 0
        self.scores = self.compute()
        worst = max(self.scores.values())
        was = self.alert
        self.alert = worst >= self.options.threshold if not was else worst >= self.options.clear
        return Change(self.alert, dict(self.scores)) if self.alert != was else None

    def compute(self) -> dict[str, float]:
        out = {}
        for name in STATISTICS:
            ref = self.reference["statistics"][name]
            out[name] = psi(ref["shares"], shares(np.fromiter(self.values[name], float), ref["edges"]))
        # Against the classes the model predicted on the validation split, not the label prior: a
        # model's own bias (it calls 3% of the 5s "3") is not drift.
        prior = self.reference["predicted_mix"]
        if len(self.predicted) < 20 * len(prior):  # too few answers per class for a stable mix
            return out
        mix = np.bincount(np.fromiter(self.predicted, int), minlength=len(prior))[: len(prior)] / len(self.predicted)
        out[CLASS_MIX] = psi(prior, mix)
        return out


def describe(change: Change, label: str, threshold: float) -> str:
    scores = ", ".join(f"{k} {v:.3f}" for k, v in sorted(change.scores.items(), key=lambda kv: -kv[1]))
    state = "ON" if change.on else "off"
    return f"cnnkit serve: drift alert {state} for {label} (PSI; alert at {threshold:g}): {scores}"
