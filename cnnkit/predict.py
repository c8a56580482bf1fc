"""Predictor: load a run once, turn raw images into inputs with its stored preprocessing, predict.

Shared by ``cnnkit predict``, the Python API and the server, so all three see the same pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cnnkit.data.transforms import pipelines_for
from cnnkit.runs import LoadedRun, load

ImageSource = "bytes | str | Path | PIL.Image.Image"


@dataclass
class Prediction:
    index: int
    label: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "probability": round(self.probability, 6)}


class Predictor:
    """A run's model with its preprocessing; ``predict`` takes files, bytes or PIL images."""

    def __init__(self, loaded: LoadedRun, device: str | torch.device = "cpu") -> None:
        self.loaded = loaded
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).eval()
        pre = loaded.spec["preprocess"]
        self.pre = pre
        self.pipeline = pipelines_for(pre)[1]

    @classmethod
    def from_run(cls, ref: str, runs_dir: str | Path | None = None, device: str = "cpu") -> "Predictor":
        return cls(load(ref, runs_dir, device), device)

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    def to_uint8(self, source: Any) -> np.ndarray:
        """One raw image -> uint8 (C, S, S) at the size and channels the run stored its data in."""
        from PIL import Image

        from cnnkit.data.imageio import decode_image, fit_image

        img = source if isinstance(source, Image.Image) else decode_image(source, target_size=self.pre["stored_size"])
        return fit_image(img, self.pre["stored_size"], self.pre["channels"])

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

    def top_k(self, probs: torch.Tensor, k: int) -> list[list[Prediction]]:
        k = max(1, min(k, probs.shape[1]))
        values, indices = probs.topk(k, dim=1)
        return [
            [Prediction(int(i), self.classes[int(i)], float(p)) for p, i in zip(vs.tolist(), ix.tolist())]
            for vs, ix in zip(values, indices)
        ]
