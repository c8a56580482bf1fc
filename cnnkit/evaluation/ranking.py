"""Threshold-free, one-vs-rest metrics of a class's scores: ROC and precision-recall curves, ROC
AUC and average precision, computed as scikit-learn defines them (the tests compare against it).

Scores are the predicted probabilities of one class; positives are the images of that class. Tied
scores form one threshold, so a curve never depends on the order of tied images.
"""
from __future__ import annotations

import numpy as np


def _thresholds(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) and the true/false positives counted at each."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], positive[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each tie group
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return s[last], tps, fps


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> dict[str, list[float]]:
    """False and true positive rates from the strictest threshold down, starting at (0, 0)."""
    _, tps, fps = _thresholds(np.asarray(scores, np.float64), np.asarray(positive, bool))
    p, n = tps[-1] if len(tps) else 0.0, fps[-1] if len(fps) else 0.0
    tpr = np.r_[0.0, tps / p] if p else np.zeros(len(tps) + 1)
    fpr = np.r_[0.0, fps / n] if n else np.zeros(len(fps) + 1)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (trapezoids; ties count one half); None without both kinds of image."""
    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return None
    curve = roc_curve(scores, positive)
    fpr, tpr = np.asarray(curve["fpr"]), np.asarray(curve["tpr"])
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def pr_curve(scores: np.ndarray, positive: np.ndarray) -> dict[str, list[float]]:
    """Precision and recall at each distinct threshold (strictest first), with the thresholds."""
    thr, tps, fps = _thresholds(np.asarray(scores, np.float64), np.asarray(positive, bool))
    total = tps[-1] if len(tps) else 0.0
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / total if total else np.zeros_like(tps)
    return {"precision": precision.tolist(), "recall": recall.tolist(), "thresholds": thr.tolist()}


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Sum over thresholds of (recall gained) x precision: the step area under the PR curve,
    without interpolation (scikit-learn's definition); None when the class has no image."""
    positive = np.asarray(positive, bool)
    if not positive.any():
        return None
    curve = pr_curve(scores, positive)
    recall = np.r_[0.0, curve["recall"]]
    return float(np.sum(np.diff(recall) * np.asarray(curve["precision"])))


def per_class_ranking(probs: np.ndarray, labels: np.ndarray) -> list[dict[str, float | None]]:
    """ROC AUC and average precision of every class, one-vs-rest."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    return [{"roc_auc": roc_auc(probs[:, k], labels == k), "average_precision": average_precision(probs[:, k], labels == k)}
            for k in range(probs.shape[1])]


def macro(values: list[float | None]) -> float | None:
    """Mean over the classes where the metric is defined."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
