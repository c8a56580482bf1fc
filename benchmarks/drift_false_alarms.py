"""False-alarm rate of the drift alert on clean data, and how fast it catches shifted data.

Trains a small MNIST run (or takes --run), then streams MNIST test images (clean, in random
orders: --streams) through the same statistics and DriftWindow the server uses, counting the
windows scored with the alert on; then each shifted stream (noise, Fashion-MNIST, inverted
images without the digit preprocessing) and the images it took to turn the alert on.

    python benchmarks/drift_false_alarms.py --streams 20
"""
from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnkit.data.builtins import load_builtin
from cnnkit.evaluation.reference import REFERENCE_FILE, image_statistics
from cnnkit.predict import Predictor
from cnnkit.serve.drift import DriftOptions, DriftWindow


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def served_view(pred: Predictor, images: np.ndarray, digits: bool) -> tuple[np.ndarray, np.ndarray]:
    """What the server computes for each image: the prepared array and the probabilities."""
    arrays = np.stack([pred.prepare(png(a), digits).array for a in images])
    return arrays, pred.probabilities(torch.from_numpy(arrays)).numpy()


def stream(reference: dict, options: DriftOptions, arrays: np.ndarray, probs: np.ndarray) -> tuple[int, int, int | None]:
    """(windows scored, windows with the alert on, images until the alert first turned on)."""
    window, scored, on, first = DriftWindow(reference, options), 0, 0, None
    for start in range(0, len(probs), 8):
        a, p = arrays[start:start + 8], probs[start:start + 8]
        before = dict(window.scores)
        window.add(image_statistics(a, p), p.argmax(1))
        if window.scores and window.scores != before:
            scored += 1
            on += window.alert
            if window.alert and first is None:
                first = start + len(p)
    return scored, on, first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="/work/shared/data")
    ap.add_argument("--run", help="a trained run folder (default: train one, 6000 images, 2 epochs)")
    ap.add_argument("--streams", type=int, default=20, help="random orders of the 10,000 clean test images")
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--threshold", type=float, default=0.25)
    args = ap.parse_args()
    root = Path(args.data_dir)
    run = args.run
    if run is None:
        import cnnkit

        tmp = tempfile.mkdtemp()
        out = cnnkit.train(data={"name": "mnist", "data_dir": str(root), "limit": 6000}, model={"name": "cnn"},
                           train={"epochs": 2, "batch_size": 64, "progress": False}, run={"name": "d", "runs_dir": tmp})
        run = str(out.run.path)
    pred = Predictor.from_run(run)
    reference = pred.loaded.run.read(REFERENCE_FILE)
    options = DriftOptions(window=args.window, min_count=min(200, args.window), threshold=args.threshold,
                           clear=0.8 * args.threshold)
    mnist = load_builtin("mnist", root, download=False).test.images[:, 0].numpy()
    arrays, probs = served_view(pred, mnist, digits=True)
    scored = on = 0
    rng = np.random.default_rng(0)
    for _ in range(args.streams):
        order = rng.permutation(len(probs))
        s, o, _ = stream(reference, options, arrays[order], probs[order])
        scored, on = scored + s, on + o
    print(f"clean MNIST test, {args.streams} random orders: {on} of {scored} scored windows with the alert on "
          f"(false-alarm rate {on / max(1, scored):.4f}; window {args.window}, threshold {args.threshold})")
    shifted = {
        "noise (std 60)": (np.clip(mnist[:2000] + rng.normal(0, 60, mnist[:2000].shape), 0, 255).astype(np.uint8), True),
        "fashion-mnist": (load_builtin("fashion-mnist", root, download=False).test.images[:2000, 0].numpy(), True),
        "inverted, preprocess=plain": (255 - mnist[:2000], False),
    }
    for name, (images, digits) in shifted.items():
        a, p = served_view(pred, images, digits)
        s, o, first = stream(reference, options, a, p)
        print(f"{name}: alert on in {o} of {s} scored windows; first on after {first} images")


if __name__ == "__main__":
    main()
