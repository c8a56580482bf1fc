"""Predictor: load a run once, turn raw images into inputs with its stored preprocessing, predict.

Shared by ``cnnkit predict``, the Python API and the server, so all three see the same pixels.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit.data.transforms import pipelines_for
from cnnkit.decision import RULE_FILE, apply_rule
from cnnkit.decision import describe as describe_rule
from cnnkit.runs import LoadedRun, load


@dataclass
class Prediction:
    index: int
    label: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "probability": round(self.probability, 6)}


@dataclass
class Prepared:
    """One image as the model sees it (uint8 (C, S, S)) and the preprocessing steps that ran."""

    array: np.ndarray
    steps: list[str]


class Predictor:
    """A run's model with its preprocessing; ``predict`` takes files, bytes or PIL images.

    ``digits``: run the MNIST-style photo preprocessing (cnnkit.data.preprocess) on raw images;
    None (the default) turns it on for runs whose data kind is "digits".
    """

    def __init__(self, loaded: LoadedRun, device: str | torch.device = "cpu", digits: bool | None = None) -> None:
        self.loaded = loaded
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).eval()
        pre = loaded.spec["preprocess"]
        self.pre = pre
        self.pipeline = pipelines_for(pre)[1]
        self.digits = pre.get("kind") == "digits" if digits is None else digits
        # A decision rule saved by `cnnkit eval --target-recall ... --save-rule`; None: argmax.
        self.rule = loaded.run.read(RULE_FILE)

    @classmethod
    def from_run(cls, ref: str, runs_dir: str | Path | None = None, device: str = "cpu",
                 digits: bool | None = None) -> Predictor:
        return cls(load(ref, runs_dir, device), device, digits)

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    def to_uint8(self, source: Any, digits: bool | None = None) -> np.ndarray:
        """One raw image -> uint8 (C, S, S) at the size and channels the run stored its data in."""
        return self.prepare(source, digits).array

    def prepare(self, source: Any, digits: bool | None = None, max_pixels: int | None = None) -> Prepared:
        """``to_uint8`` plus the names of the preprocessing steps that ran (shown by the server).

        ``digits`` overrides the predictor's setting for this image; ``max_pixels`` tightens the
        decoder's limit (the server's guard against decompression bombs).
        """
        from PIL import Image

        from cnnkit.data.imageio import DEFAULT_MAX_PIXELS, decode_image, fit_image

        size, channels = self.pre["stored_size"], self.pre["channels"]
        use_digits = self.digits if digits is None else digits
        # Digit photos are cropped to the ink, so decode them big enough to crop from.
        target = max(size, 256) if use_digits else size
        img = source if isinstance(source, Image.Image) else decode_image(source, max_pixels or DEFAULT_MAX_PIXELS, target_size=target)
        if not use_digits:
            return Prepared(fit_image(img, size, channels), [f"resize-{size}x{size}"])
        from cnnkit.data.preprocess import digit_image

        gray, steps = digit_image(img, size)
        return Prepared(np.repeat(gray[None], channels, axis=0), steps)

    @torch.inference_mode()
    def probabilities(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, S, S) -> class probabilities (N, K), float32 on the CPU."""
        x = self.pipeline(batch_uint8.to(self.device))
        return torch.softmax(self.model(x).float(), dim=1).cpu()

    def predict(self, sources: Sequence[Any], top_k: int = 5) -> list[list[Prediction]]:
        if not sources:
            return []
        batch = torch.from_numpy(np.stack([self.to_uint8(s) for s in sources]))
        return self.top_k(self.probabilities(batch), top_k)

    def decide(self, probs: Any) -> dict[str, Any]:
        """The answer for one image's probabilities (K,) under the run's rule, and which rule it was."""
        row = np.asarray(probs, dtype=np.float64)[None]
        index = int(apply_rule(row, self.rule)[0])
        return {"index": index, "label": self.classes[index], "probability": round(float(row[0, index]), 6),
                "rule": describe_rule(self.rule)}

    def top_k(self, probs: torch.Tensor, k: int) -> list[list[Prediction]]:
        k = max(1, min(k, probs.shape[1]))
        values, indices = probs.topk(k, dim=1)
        return [
            [Prediction(int(i), self.classes[int(i)], float(p)) for p, i in zip(vs.tolist(), ix.tolist())]
            for vs, ix in zip(values, indices)
        ]
