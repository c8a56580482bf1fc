"""A run's decision rule, applied to class probabilities: argmax, or a saved recall-first rule.

The rule is chosen by ``cnnkit eval --target-recall`` (``cnnkit.evaluation.operating_point``) and
applied by ``predict`` and ``serve``; it sits down here so that applying it needs no evaluation code.
"""
from __future__ import annotations

from typing import Any

import numpy as np

RULE_FILE = "decision_rule.json"
ARGMAX = "argmax"


def apply_rule(probs: np.ndarray, rule: dict[str, Any] | None) -> np.ndarray:
    """Predicted class per row of ``probs`` (N, K) under ``rule`` (None: argmax)."""
    probs = np.asarray(probs)
    preds = probs.argmax(axis=1)
    if not rule:
        return preds
    k = int(rule["index"])
    others = probs.copy()
    others[:, k] = -np.inf
    hit = probs[:, k] >= float(rule["threshold"])
    return np.where(hit, k, np.where(preds == k, others.argmax(axis=1), preds))


def describe(rule: dict[str, Any] | None) -> str:
    if not rule:
        return ARGMAX
    return f"target-recall {rule['class']}>={rule['target_recall']:g}: P({rule['class']}) >= {rule['threshold']:.4g}"
