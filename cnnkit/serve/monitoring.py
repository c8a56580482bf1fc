"""What happens to every answered image besides the answer: the prediction log and drift scores.

``Observer.record`` is called by ``cnnkit.serve.service`` after each forward pass that answers a
request (/predict, /explain, KServe v2, the Gradio app), with the images the model saw and its
probabilities. It computes the per-image statistics (vectorized), feeds each model version's
``DriftWindow``, sets the Prometheus gauges when the scores change, logs a warning when an alert
flips, and queues one log line per image; the disk is written by the log's own thread.

Without a prediction log, the images of several requests are gathered until the window would
recompute its scores (``DriftOptions.every``) and their statistics computed in one call: numpy's
per-call overhead made one image cost 56 us against 6 us in a batch of 25, about a tenth of a
server worker's time per MNIST-size request (issue 17's profile).
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from cnnkit.evaluation.reference import REFERENCE_FILE, image_statistics
from cnnkit.serve.drift import DriftWindow, describe, options_for
from cnnkit.serve.prometheus import Metrics
from cnnkit.serve.settings import Monitoring

log = logging.getLogger("cnnkit.serve")
LOG_TOP_K = 5


class Observer:
    def __init__(self, monitoring: Monitoring, metrics: Metrics) -> None:
        self.monitoring = monitoring
        reg = metrics.registry
        self.score = Gauge("cnnkit_drift_score", "PSI of recent inputs against the run's reference, per statistic",
                           ["model", "statistic"], registry=reg, multiprocess_mode="livemax")
        self.alert = Gauge("cnnkit_drift_alert", "1 while the drift alert is on (any PSI over the threshold)",
                           ["model"], registry=reg, multiprocess_mode="livemax")
        dropped = Counter("cnnkit_prediction_log_dropped", "Log lines dropped because the writer fell behind",
                          registry=reg)
        self.options = options_for(monitoring)
        self.windows: dict[str, DriftWindow | None] = {}
        self._pending: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self.log = None
        if monitoring.log_dir:
            from cnnkit.serve.predlog import PredictionLog

            self.log = PredictionLog(monitoring.log_dir, int(monitoring.max_file_mb * 2**20),
                                     int(monitoring.max_total_mb * 2**20), on_drop=dropped.inc)

    def _window(self, model: Any, label: str) -> DriftWindow | None:
        if label not in self.windows:
            reference = model.predictor.loaded.run.read(REFERENCE_FILE) if self.monitoring.drift else None
            if reference is None and self.monitoring.drift:
                log.warning("cnnkit serve: %s has no %s (trained before issue 16?): no drift scores for it",
                            label, REFERENCE_FILE)
            self.windows[label] = DriftWindow(reference, self.options) if reference else None
            if reference:
                self.alert.labels(label).set(0)
        return self.windows[label]

    def record(self, model: Any, arrays: Sequence[np.ndarray], probs: Sequence[np.ndarray], route: str,
               blobs: Sequence[bytes] | None = None, steps: Sequence[Sequence[str]] | None = None) -> None:
        label = f"{model.name}:v{model.version}"
        window = self._window(model, label)
        if self.log is None:  # drift scores only: gather images until the window would recompute
            if window is None:
                return
            images, answers = self._pending.setdefault(label, ([], []))
            images.extend(arrays)
            answers.extend(probs)
            if len(images) < window.options.every:
                return
            arrays, probs = images, answers
            self._pending[label] = ([], [])
        batch, p = np.stack(arrays), np.stack(probs)
        stats = image_statistics(batch, p)
        if window is not None:
            self._drift(window, label, stats, p)
        if self.log is not None:
            self._log_lines(model, batch, p, stats, route, blobs, steps)

    def _drift(self, window: DriftWindow, label: str, stats: dict[str, np.ndarray], p: np.ndarray) -> None:
        before = window.scores
        change = window.add(stats, p.argmax(axis=1))
        if window.scores is not before:  # recomputed (every DriftOptions.every images)
            for name, value in window.scores.items():
                self.score.labels(label, name).set(value)
        if change is not None:
            self.alert.labels(label).set(int(change.on))
            log.warning(describe(change, label, window.options.threshold))

    def _log_lines(self, model: Any, batch: np.ndarray, p: np.ndarray, stats: dict[str, np.ndarray], route: str,
                   blobs: Sequence[bytes] | None, steps: Sequence[Sequence[str]] | None) -> None:
        now = time.time()
        order = np.argsort(-p, axis=1, kind="stable")[:, :LOG_TOP_K]
        for i in range(len(p)):
            source = blobs[i] if blobs is not None else batch[i].tobytes()
            line: dict[str, Any] = {
                "time": round(now, 3), "model": model.name, "version": model.version, "route": route,
                "top_k": [{"label": model.classes[int(j)], "index": int(j), "probability": round(float(p[i, j]), 6)}
                          for j in order[i]],
                "confidence": round(float(p[i, order[i, 0]]), 6),
                "stats": {k: round(float(v[i]), 5) for k, v in stats.items() if k != "confidence"},
                "preprocessing": list(steps[i]) if steps is not None else [],
                "input_bytes": len(source), "input_shape": list(batch[i].shape),
                "sha256": hashlib.sha256(source).hexdigest()[:32],
            }
            if self.monitoring.log_inputs:
                line["_input"] = batch[i].copy()  # encoded as PNG by the writer thread
            self.log.put(line)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def observer_for(settings: Any, metrics: Metrics) -> Observer | None:
    """The app's Observer, or None when it would do nothing (no log, no drift)."""
    m = settings.monitoring
    return Observer(m, metrics) if m.log_dir or m.drift else None
