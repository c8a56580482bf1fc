"""The serving pattern of the tutorials, kept as the baseline for benchmarks/serve_load.py.

Load the model once, ``POST /predict`` with a multipart ``file``, PIL preprocessing (grayscale,
resize to the model's size, scale and normalize), one eager forward pass per request, JSON out,
``app.run(threaded=True)``. Deliberately as the notebooks write it: no batching, no limits.

    python benchmarks/flask_baseline.py mnist-airbench --runs-dir /tmp/serve-runs --port 8100
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from flask import Flask, jsonify, request
from PIL import Image

import cnnkit


def make_app(run: str, runs_dir: str | None) -> Flask:
    loaded = cnnkit.load(run, runs_dir=runs_dir)
    model, pre, classes = loaded.model.eval(), loaded.spec["preprocess"], loaded.classes
    mean = np.array(pre["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.array(pre["std"], dtype=np.float32).reshape(-1, 1, 1)
    app = Flask(__name__)

    @app.route("/predict", methods=["POST"])
    def predict():
        img = Image.open(request.files["file"].stream)
        img = img.convert("L" if pre["channels"] == 1 else "RGB").resize((pre["input_size"], pre["input_size"]))
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        x = torch.from_numpy((x - mean) / std).unsqueeze(0)
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)[0]
        top = int(probs.argmax())
        return jsonify({"label": classes[top], "probability": float(probs[top])})

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--runs-dir")
    p.add_argument("--port", type=int, default=8100)
    a = p.parse_args()
    make_app(a.run, a.runs_dir).run(host="127.0.0.1", port=a.port, threaded=True)


if __name__ == "__main__":
    main()
