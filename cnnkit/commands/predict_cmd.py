"""``cnnkit predict RUN IMAGE...``: top-k classes for image files, with the run's preprocessing."""
from __future__ import annotations

import argparse

from cnnkit.cli import add_runs_dir


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("predict", help="predict the class of image files with a trained run")
    p.add_argument("run", metavar="RUN", help="NAME, NAME:vN or a path to a run version")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, BMP, WebP...)")
    p.add_argument("--top-k", type=int, default=3, help="how many classes to show per image (default: 3)")
    add_runs_dir(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--digits", action=argparse.BooleanOptionalAction, default=None,
                   help="MNIST-style photo preprocessing (grayscale, invert, crop to the ink, centre by mass); "
                        "default: on for runs trained on digits")
    p.add_argument("--json", action="store_true", help="print JSON: one object per image")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.errors import CnnkitError
    from cnnkit.predict import Predictor

    if args.top_k < 1:
        raise CnnkitError("--top-k must be at least 1")
    predictor = Predictor.from_run(args.run, args.runs_dir, args.device, digits=args.digits)
    results = predictor.predict(args.images, args.top_k)
    out = [{"image": path, "predictions": [p.to_dict() for p in preds]} for path, preds in zip(args.images, results)]
    lines = [f"{o['image']}: " + ", ".join(f"{p['label']} {p['probability']:.3f}" for p in o["predictions"]) for o in out]
    if predictor.rule:  # a saved decision rule can answer other than the top class: say so
        import numpy as np
        import torch

        batch = torch.from_numpy(np.stack([predictor.to_uint8(path) for path in args.images]))
        for o, row, i in zip(out, predictor.probabilities(batch).numpy(), range(len(lines))):
            o["decision"] = predictor.decide(row)
            lines[i] += f"  -> {o['decision']['label']} (rule: {o['decision']['rule']})"
    emit(args, out, "\n".join(lines))
    return 0
