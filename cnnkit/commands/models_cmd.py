"""``cnnkit models``: what the registry holds."""
from __future__ import annotations

import argparse


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("models", help="list the registered models (plus tv:NAME and timm:NAME)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.models import build_model, describe, model_names

    rows = []
    for name in model_names():
        params = sum(p.numel() for p in build_model(name, 10, 1, 28).parameters())
        rows.append({"name": name, "params_28x28x1": params, "description": describe(name)})
    text = "\n".join(f"{r['name']:<14} {r['params_28x28x1']:>11,}  {r['description']}" for r in rows)
    text += "\n\nAlso: tv:NAME (torchvision) and timm:NAME (timm) architectures; --pretrained loads their weights."
    emit(args, rows, f"{'MODEL':<14} {'PARAMS':>11}  (1x28x28 input, 10 classes)\n" + text)
    return 0
