"""Warming a model version before it takes traffic: ready means warm.

The first forward pass at each new batch size is slow (oneDNN builds its kernels per input
shape; ONNX Runtime allocates its arenas), and so is the first image decode (Pillow plugins,
lazily imported preprocessing). Done on the first requests, this shows up as seconds of bad
p99 right after "ready". So every batch size the batcher can form (1..max_batch) runs once,
and one image goes through each preprocessing path, before the version is added to the
registry: at startup in every worker, and for versions loaded through the admin endpoint.
"""
from __future__ import annotations

import io
import time
from typing import Any

import numpy as np


def _sample_png(size: int, channels: int) -> bytes:
    from PIL import Image

    arr = np.zeros((size, size), dtype=np.uint8)
    arr[size // 4: 3 * size // 4, size // 2 - 1: size // 2 + 2] = 255  # a "1": some ink to preprocess
    img = Image.fromarray(arr if channels == 1 else np.repeat(arr[..., None], 3, axis=2))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def warm(model: Any, max_batch: int) -> float:
    """Blocking: run every batch shape 1..max_batch and each preprocessing path once; seconds taken."""
    start = time.perf_counter()
    pre = model.pre
    shape = (pre["channels"], pre["stored_size"], pre["stored_size"])
    blob = _sample_png(pre["stored_size"], pre["channels"])
    for digits in (True, False):
        model.predictor.prepare(blob, digits)
    for n in range(1, max_batch + 1):
        model.run_batch([np.zeros(shape, dtype=np.uint8)] * n)
    model.run_batch([np.zeros(shape, dtype=np.float32)])  # the KServe FP32 path
    return time.perf_counter() - start
