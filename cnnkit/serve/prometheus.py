"""Prometheus metrics: requests, errors by kind, latency, batch sizes, queue depth.

Each app gets its own ``CollectorRegistry`` (no process-wide default registry, so two apps in
one test process do not collide). With several worker processes, prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the server before the workers start)
adds up the workers' values, so ``/metrics`` shows the whole server whichever worker answers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    errors: Counter
    latency: Histogram
    batch_size: Histogram
    batch_seconds: Histogram
    queue_depth: Gauge

    @classmethod
    def create(cls) -> Metrics:
        reg = CollectorRegistry(auto_describe=True)
        return cls(
            registry=reg,
            requests=Counter("cnnkit_requests", "HTTP requests answered", ["route", "method", "status"], registry=reg),
            errors=Counter("cnnkit_errors", "Requests answered with an error, by kind", ["kind"], registry=reg),
            latency=Histogram("cnnkit_request_latency_seconds", "Time from request to response", ["route"],
                              buckets=LATENCY_BUCKETS, registry=reg),
            batch_size=Histogram("cnnkit_batch_size", "Images per forward pass", ["model"], buckets=BATCH_BUCKETS,
                                 registry=reg),
            batch_seconds=Histogram("cnnkit_batch_seconds", "Time of one forward pass", ["model"],
                                    buckets=LATENCY_BUCKETS, registry=reg),
            queue_depth=Gauge("cnnkit_queue_depth", "Images waiting for a forward pass", ["model"], registry=reg,
                              multiprocess_mode="livesum"),
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text format; across all workers when running in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)
            return generate_latest(combined), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
