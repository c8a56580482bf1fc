"""One forward pass, in eager PyTorch or in ONNX Runtime: model inputs in, probabilities out.

Both take a batch of images as the run stored its data, uint8 (N, C, S, S) 0..255, or float32
(N, C, S, S) 0..1 (a KServe FP32 tensor), apply the run's own normalization (and resize when the
model's input size differs), and return float32 class probabilities (N, K) as numpy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.data.transforms import Normalization
from cnnkit.models.layers import fold_batchnorm


class Backend(Protocol):
    name: str

    def probabilities(self, batch: np.ndarray) -> np.ndarray: ...


class ModelInputs:
    """The run's eval preprocessing on a uint8 or 0..1 float batch -> normalized float32 tensor."""

    def __init__(self, pre: dict[str, Any]) -> None:
        self.norm = Normalization(tuple(pre["mean"]), tuple(pre["std"]))
        self.input_size = int(pre["input_size"])
        self.mean = torch.tensor(self.norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(self.norm.std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(batch)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            # Same op as cnnkit.data.transforms.BatchPipeline, so the pixels match training's.
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return (x - self.mean).mul_(self.inv_std)


class TorchBackend:
    """Eager PyTorch on a BN-folded copy of the model (the original stays for Grad-CAM), in
    channels-last layout, which oneDNN's CPU convolutions run faster on batches."""

    name = "torch"

    def __init__(self, model: nn.Module, pre: dict[str, Any]) -> None:
        self.inputs = ModelInputs(pre)
        fast = fold_batchnorm(model).to(memory_format=torch.channels_last)
        probe = torch.rand(4, pre["channels"], pre["input_size"], pre["input_size"])
        with torch.inference_mode():
            same = torch.allclose(fast(probe.contiguous(memory_format=torch.channels_last)), model.eval()(probe),
                                  rtol=1e-3, atol=1e-4)
        self.model = fast if same else model.eval()  # never serve a faster model that answers differently

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        x = self.inputs(batch).contiguous(memory_format=torch.channels_last)
        logits = self.model(x).float()
        return torch.softmax(logits, dim=1).numpy()


class OnnxBackend:
    name = "onnx"

    def __init__(self, onnx_path: str | Path, pre: dict[str, Any], threads: int = 1, name: str = "onnx") -> None:
        from cnnkit.export.onnx import session

        self.name = name  # "onnx", or "onnx-int8" for the quantized export

        self.session = session(Path(onnx_path), threads)
        self.input_name = self.session.get_inputs()[0].name
        self.inputs = ModelInputs(pre)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = self.inputs(batch).numpy()
        logits = self.session.run(None, {self.input_name: x})[0].astype(np.float32)
        logits -= logits.max(axis=1, keepdims=True)  # stable softmax
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)
