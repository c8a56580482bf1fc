"""Cerebrium entry point written by ``cnnkit deploy --target cerebrium``.

The model is loaded once, when Cerebrium imports this module; each call of ``predict`` is one
request: ``{"image": "<base64 PNG/JPEG/...>", "top_k": 5}`` in, the body of cnnkit's
``POST /predict`` out. Runs on ONNX Runtime, numpy and Pillow (see README.md); no cnnkit, no torch.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # cnnkit_bundle/ sits beside this file

from cnnkit_bundle import OnnxPredictor  # noqa: E402

PREDICTOR = OnnxPredictor(HERE / "model")


def predict(image: str, top_k: int = 5) -> dict:
    """A base64 image (or data URL) -> ``{"model", "version", "results": [{"predictions", "preprocessing"}]}``."""
    return PREDICTOR.response([image], top_k)
