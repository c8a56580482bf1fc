"""What "normal" looks like for a run: per-image statistics on its validation split, stored at
training time as ``reference.json`` and compared with live traffic by ``cnnkit.serve.drift``.

Each statistic is one number per image, computed from what the model sees (the uint8 array at
the run's stored size) and from its answer: the top-1 confidence, the mean brightness, the
contrast (pixel standard deviation) and the edge energy (mean absolute difference between
neighbouring pixels, which noise and blur move). The reference keeps, for each, the decile
edges of the validation values and the share of validation images between them; the class
prior is the training split's label frequencies.

Drift is measured with the population stability index (PSI) over those bins:
``sum((p - q) * ln(p / q))`` for reference shares ``q`` and window shares ``p``. PSI was chosen
over a two-sample test because its scale does not grow with the window size (a KS p-value on
500 images flags shifts too small to matter) and its conventional reading is well known:
below 0.1 stable, 0.1-0.25 moderate, above 0.25 a significant shift.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

REFERENCE_FILE = "reference.json"
FORMAT = 1
INPUT_STATISTICS = ("brightness", "contrast", "edges")
STATISTICS = ("confidence", *INPUT_STATISTICS)
BINS = 10
SAMPLE = 1000  # reference values kept for the monitor report's plots
LOW_CONFIDENCE = 0.5  # "low confidence" in the monitor report and the reference: top-1 below this
EPS = 1e-4  # floor of a bin's share, so an empty bin gives a large but finite PSI


def input_statistics(arrays: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 (N, C, S, S) -> one value per image for each of INPUT_STATISTICS (0..1 scale)."""
    x = np.asarray(arrays, dtype=np.float32) / 255.0
    flat = x.reshape(len(x), -1)
    dx = np.abs(np.diff(x, axis=-1)).mean(axis=(1, 2, 3))
    dy = np.abs(np.diff(x, axis=-2)).mean(axis=(1, 2, 3))
    return {"brightness": flat.mean(axis=1), "contrast": flat.std(axis=1), "edges": (dx + dy) / 2}


def image_statistics(arrays: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Every statistic for a batch: arrays uint8 (N, C, S, S), probs (N, K)."""
    return {"confidence": np.asarray(probs, dtype=np.float64).max(axis=1), **input_statistics(arrays)}


def bin_edges(values: np.ndarray, bins: int = BINS) -> list[float]:
    """Interior decile edges (ties collapse: a statistic piled on one value gets fewer bins)."""
    qs = np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return [float(v) for v in np.unique(np.round(qs, 6))]


def shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of ``values`` in each bin defined by the interior ``edges`` (len(edges) + 1 bins)."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="right")
    return np.bincount(index, minlength=len(edges) + 1) / max(1, len(values))


def psi(reference: Sequence[float], observed: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins."""
    q = np.maximum(np.asarray(reference, dtype=np.float64), EPS)
    p = np.maximum(np.asarray(observed, dtype=np.float64), EPS)
    return float(np.sum((p - q) * np.log(p / q)))


def class_mix(predicted: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(predicted, dtype=np.int64), minlength=num_classes) / max(1, len(predicted))


def build_reference(arrays: np.ndarray, probs: np.ndarray, train_labels: np.ndarray, classes: Sequence[str],
                    split: str = "val", seed: int = 0) -> dict[str, Any]:
    """The reference record of a run from its validation images (uint8) and probabilities."""
    stats = image_statistics(arrays, probs)
    rng = np.random.default_rng(seed)
    keep = rng.choice(len(probs), size=min(SAMPLE, len(probs)), replace=False)
    record: dict[str, Any] = {"format": FORMAT, "split": split, "count": int(len(probs)), "method": "psi",
                              "statistics": {}}
    for name, values in stats.items():
        edges = bin_edges(values)
        record["statistics"][name] = {"edges": edges, "shares": np.round(shares(values, edges), 6).tolist(),
                                      "mean": round(float(values.mean()), 6),
                                      "sample": np.round(values[keep], 5).tolist()}
    k = len(classes)
    record["class_prior"] = np.round(class_mix(train_labels, k), 6).tolist()
    record["predicted_mix"] = np.round(class_mix(probs.argmax(axis=1), k), 6).tolist()
    record["low_confidence"] = {"threshold": LOW_CONFIDENCE, "share": round(float((stats["confidence"] < LOW_CONFIDENCE).mean()), 6)}
    return record

