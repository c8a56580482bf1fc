"""What the digit preprocessing does to MNIST's own test images, with and without its MNIST-format shortcut.

Every test image goes through ``digit_image`` twice: as the server does (an image already in
MNIST's format passes as it is: step ``mnist-format``) and with every step forced on
(``shortcut=False``). Printed: how many take the shortcut, the run's accuracy both ways and on the
raw images, how many answers change, and the time per image of each path.

    python benchmarks/mnist_shortcut.py main --runs-dir bench-out/runs
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnkit.data.builtins import load_builtin
from cnnkit.data.preprocess import digit_image
from cnnkit.predict import Predictor


def _prepared(images: np.ndarray, shortcut: bool) -> tuple[np.ndarray, int, float]:
    out, taken, t0 = [], 0, time.perf_counter()
    for arr in images:
        gray, steps = digit_image(Image.fromarray(arr), 28, shortcut=shortcut)
        out.append(gray)
        taken += steps == ["mnist-format"]
    return np.stack(out), taken, (time.perf_counter() - t0) * 1e6 / len(images)


def _answers(pred: Predictor, gray: np.ndarray) -> np.ndarray:
    batches = [pred.probabilities(torch.from_numpy(gray[i:i + 500, None])) for i in range(0, len(gray), 500)]
    return torch.cat(batches).argmax(1).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--runs-dir")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--limit", type=int, default=10000)
    a = p.parse_args()
    test = load_builtin("mnist", Path(a.data_dir), download=False).test
    images, labels = test.images[: a.limit, 0].numpy(), test.labels[: a.limit].numpy()
    pred = Predictor.from_run(a.run, a.runs_dir)
    _prepared(images[:50], shortcut=False)  # first calls import and warm up (SciPy)
    fast, taken, us_fast = _prepared(images, shortcut=True)
    full, _, us_full = _prepared(images, shortcut=False)
    raw, with_shortcut, every_step = _answers(pred, images), _answers(pred, fast), _answers(pred, full)
    print(json.dumps({"run": a.run, "images": len(images), "took_the_shortcut": taken,
                      "accuracy_raw": float((raw == labels).mean()),
                      "accuracy_with_shortcut": float((with_shortcut == labels).mean()),
                      "accuracy_every_step": float((every_step == labels).mean()),
                      "answers_changed": int((with_shortcut != every_step).sum()),
                      "us_per_image_with_shortcut": round(us_fast, 1), "us_per_image_every_step": round(us_full, 1)}, indent=2))


if __name__ == "__main__":
    main()
