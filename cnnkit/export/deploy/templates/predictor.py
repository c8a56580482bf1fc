"""The bundle's predictor: a cnnkit run's checked ONNX export behind ONNX Runtime, numpy and Pillow.

Written into every Python deploy bundle by ``cnnkit deploy`` (package ``cnnkit_bundle``) beside
``imageio.py`` and ``preprocess.py``, which are cnnkit's own decoding and digit-photo modules
copied verbatim at deploy time, so a bundle sees the same pixels as ``cnnkit predict``. It does
what ``cnnkit.predict.Predictor`` does, without torch: decode -> uint8 (C, S, S) at the run's
stored size (digit runs through the MNIST-style photo preprocessing) -> /255, resized to the
model's input size when it differs -> (x - mean) / std -> ONNX Runtime -> softmax -> top-k.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .imageio import DEFAULT_MAX_PIXELS, decode_image, fit_image

MODEL_FILE, SPEC_FILE, META_FILE = "model.onnx", "model.json", "bundle.json"


def image_bytes(source: Any) -> Any:
    """A PIL image, raw bytes, a path, a base64 string or a data URL -> what ``decode_image`` takes."""
    if isinstance(source, (Image.Image, bytes, bytearray, memoryview, Path)):
        return source
    if not isinstance(source, str):
        raise ValueError(f"an image must be a PIL image, bytes, a path or a base64 string, not {type(source).__name__}")
    text = source.strip()
    if len(text) < 1024 and Path(text).is_file():
        return Path(text)
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the image string is neither base64 nor an existing file") from None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class OnnxPredictor:
    """``OnnxPredictor(folder)`` loads ``folder/model.onnx`` and ``folder/model.json`` once."""

    def __init__(self, folder: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        self.spec = json.loads((folder / SPEC_FILE).read_text())
        meta = folder / META_FILE  # the served name and version, written by cnnkit deploy
        self.meta = json.loads(meta.read_text()) if meta.is_file() else {}
        self.pre = self.spec["preprocess"]
        self.classes = list(self.spec["classes"])
        self.digits = self.pre.get("kind") == "digits"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = max(1, threads), 1, 3
        self.session = ort.InferenceSession(str(folder / MODEL_FILE), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def prepare(self, source: Any, digits: bool | None = None) -> tuple[np.ndarray, list[str]]:
        """One image -> (uint8 (C, S, S), the preprocessing steps that ran), as cnnkit's Predictor."""
        size, channels = int(self.pre["stored_size"]), int(self.pre["channels"])
        use_digits = self.digits if digits is None else digits
        target = max(size, 256) if use_digits else size  # digit photos are cropped to the ink: decode big
        src = image_bytes(source)
        img = src if isinstance(src, Image.Image) else decode_image(src, DEFAULT_MAX_PIXELS, target_size=target)
        if not use_digits:
            return fit_image(img, size, channels), [f"resize-{size}x{size}"]
        from .preprocess import digit_image

        gray, steps = digit_image(img, size)
        return np.repeat(gray[None], channels, axis=0), steps

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, C, S, S) -> the float32 batch the ONNX graph takes."""
        x = batch.astype(np.float32) / 255.0
        size = int(self.pre["input_size"])
        if x.shape[-1] != size or x.shape[-2] != size:
            # Pillow's bilinear resize (antialiased when shrinking) is what torch's
            # interpolate(antialias=True) in cnnkit's pipeline reproduces: equal to ~1e-5 here.
            x = np.stack([np.stack([np.asarray(Image.fromarray(c, "F").resize((size, size), Image.Resampling.BILINEAR))
                                    for c in img]) for img in x]).astype(np.float32)
        mean = np.asarray(self.pre["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.pre["std"], dtype=np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: self.normalize(batch)})[0]
        return softmax(logits.astype(np.float32))

    def top_k(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        k = max(1, min(int(k), len(probs)))
        order = np.argsort(-probs, kind="stable")[:k]
        return [{"index": int(i), "label": self.classes[int(i)], "probability": round(float(probs[i]), 6)} for i in order]

    def predict(self, sources: Sequence[Any], top_k: int = 5, digits: bool | None = None) -> list[dict[str, Any]]:
        """One result per image, in order: ``{"predictions": [...], "preprocessing": [...]}``."""
        if not sources:
            return []
        prepared = [self.prepare(s, digits) for s in sources]
        probs = self.probabilities(np.stack([a for a, _ in prepared]))
        return [{"predictions": self.top_k(row, top_k), "preprocessing": steps} for (_, steps), row in zip(prepared, probs)]

    def response(self, sources: Sequence[Any], top_k: int = 5) -> dict[str, Any]:
        """The body ``POST /predict`` of ``cnnkit serve`` answers with."""
        return {"model": self.meta.get("name", "model"), "version": self.meta.get("version", 1),
                "results": self.predict(sources, top_k)}
