"""Hugging Face Inference Endpoints custom handler written by ``cnnkit deploy --target hf-endpoint``.

The endpoint creates ``EndpointHandler(path)`` once, with ``path`` the repository folder, and
calls it per request with the JSON body (``{"inputs": ...}``; an image upload arrives as bytes or
a PIL image). Runs on ONNX Runtime, numpy and Pillow (see requirements.txt); no cnnkit, no torch.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # cnnkit_bundle/ sits beside this file

from cnnkit_bundle import OnnxPredictor  # noqa: E402


class EndpointHandler:
    def __init__(self, path: str = "") -> None:
        self.predictor = OnnxPredictor(Path(path) if path else HERE)

    def __call__(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """``{"inputs": image or [images], "parameters": {"top_k": 5}}`` -> per image, top-k ``{"label", "score"}``.

        An image is a PIL image, bytes, or a base64 string / data URL. The list of ``{"label",
        "score"}`` is the shape of the Hub's image-classification task, so its widgets work.
        """
        inputs = data.get("inputs", data)
        top_k = int((data.get("parameters") or {}).get("top_k", 5))
        many = isinstance(inputs, list)
        results = self.predictor.predict(inputs if many else [inputs], top_k)
        out = [[{"label": p["label"], "score": p["probability"]} for p in r["predictions"]] for r in results]
        return out if many else out[0]
