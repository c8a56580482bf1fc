"""Classification metrics from predictions: numpy in, plain dicts and arrays out.

Conventions (the same as scikit-learn's, which the tests check against to 1e-6):
- a class's precision is 0 when nothing was predicted as it, recall 0 when it has no images,
  F1 = 2 TP / (2 TP + FP + FN) (0 when that is 0/0);
- macro and weighted averages run over the classes present in the labels or the predictions;
- expected calibration error uses equal-width confidence bins [i/B, (i+1)/B), the top bin closed;
- intervals are percentile bootstrap intervals over resampled images, seeded, so reruns agree.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.evaluation.ranking import macro, per_class_ranking

ECE_BINS = 15
BOOTSTRAP = 1000
LEVEL = 0.95


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (K, K): rows are true classes, columns predicted ones."""
    codes = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(preds, dtype=np.int64)
    return np.bincount(codes, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of every class from a confusion matrix (or a stack of them)."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    support = confusion.sum(axis=-1)
    predicted = confusion.sum(axis=-2)
    return {
        "precision": _safe_div(tp, predicted),
        "recall": _safe_div(tp, support),
        "f1": _safe_div(2 * tp, support + predicted),
        "support": support,
        "present": (support + predicted) > 0,
    }


def averages(stats: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Macro (unweighted over present classes) and support-weighted means of P, R and F1."""
    present, support = stats["present"], stats["support"].astype(np.float64)
    out: dict[str, dict[str, float]] = {"macro": {}, "weighted": {}}
    for key in ("precision", "recall", "f1"):
        values = stats[key]
        out["macro"][key] = float(values[present].mean()) if present.any() else 0.0
        out["weighted"][key] = float((values * support).sum() / support.sum()) if support.sum() else 0.0
    return out


def macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Macro F1 of one confusion matrix, or of each in a (B, K, K) stack."""
    s = per_class(confusion)
    return _safe_div((s["f1"] * s["present"]).sum(axis=-1), s["present"].sum(axis=-1))


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of images whose true class is among the ``k`` highest scores."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((top == np.asarray(labels)[:, None]).any(axis=1).mean())


def log_loss(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (natural log) of the true classes."""
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Per confidence bin: mean confidence, accuracy and image count (the reliability diagram)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    return {
        "confidence": _safe_div(np.bincount(idx, conf, minlength=bins), count).tolist(),
        "accuracy": _safe_div(np.bincount(idx, correct, minlength=bins), count).tolist(),
        "count": count.astype(int).tolist(),
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of images (Guo et al. 2017)."""
    r = reliability(probs, labels, bins)
    count = np.asarray(r["count"], dtype=np.float64)
    gap = np.abs(np.asarray(r["accuracy"]) - np.asarray(r["confidence"]))
    return float((gap * count).sum() / count.sum()) if count.sum() else 0.0


def bootstrap_intervals(labels: np.ndarray, preds: np.ndarray, num_classes: int, resamples: int = BOOTSTRAP,
                        level: float = LEVEL, seed: int = 0, chunk: int = 50) -> dict[str, list[float]]:
    """Percentile bootstrap intervals for accuracy and macro F1: resample the images with
    replacement ``resamples`` times, recompute both metrics, take the middle ``level`` share."""
    n = len(labels)
    if n == 0 or resamples < 1:
        raise ValueError(f"bootstrap needs images and resamples >= 1 (got {n} images, {resamples} resamples)")
    rng = np.random.default_rng(seed)
    codes = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(preds, dtype=np.int64)
    accs, f1s = [], []
    kk = num_classes * num_classes
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        # One bincount for the whole chunk: resample r's cells live at offset r * K * K.
        conf = np.bincount((codes[idx] + (np.arange(b) * kk)[:, None]).ravel(), minlength=b * kk)
        conf = conf.reshape(b, num_classes, num_classes)
        accs.append(np.trace(conf, axis1=1, axis2=2) / n)
        f1s.append(macro_f1(conf))
    tail = (1 - level) / 2 * 100
    return {name: [float(v) for v in np.percentile(np.concatenate(vals), [tail, 100 - tail])]
            for name, vals in (("accuracy", accs), ("macro_f1", f1s))}


def classification_metrics(log_probs: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                           top_k: Sequence[int] = (3, 5), resamples: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """Everything ``cnnkit eval`` reports for one set of predictions (log-probabilities (N, K))."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = len(classes)
    probs = np.exp(log_probs)
    preds = log_probs.argmax(axis=1)
    conf = confusion_matrix(labels, preds, k)
    stats = per_class(conf)
    avg = averages(stats)
    ci = bootstrap_intervals(labels, preds, k, resamples, seed=seed)
    ranked = per_class_ranking(probs, labels)  # one-vs-rest ROC AUC and average precision
    return {
        "images": len(labels),
        "loss": log_loss(log_probs, labels),
        "accuracy": float((preds == labels).mean()) if len(labels) else float("nan"),
        "accuracy_ci": ci["accuracy"],
        "macro_f1": avg["macro"]["f1"],
        "macro_f1_ci": ci["macro_f1"],
        "top_k": {f"top_{t}": top_k_accuracy(log_probs, labels, t) for t in top_k if t < k},
        "ece": expected_calibration_error(probs, labels),
        "macro": avg["macro"],
        "weighted": avg["weighted"],
        "per_class": [
            {"class": str(c), "precision": float(stats["precision"][i]), "recall": float(stats["recall"][i]),
             "f1": float(stats["f1"][i]), "support": int(stats["support"][i]), **ranked[i]}
            for i, c in enumerate(classes)
        ],
        "macro_roc_auc": macro([r["roc_auc"] for r in ranked]),
        "macro_average_precision": macro([r["average_precision"] for r in ranked]),
        "confusion": conf.tolist(),
        "reliability": reliability(probs, labels),
        "bootstrap": {"resamples": resamples, "level": LEVEL, "seed": seed, "method": "percentile"},
    }
