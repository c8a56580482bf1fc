"""CLI verbs, one module per group; each module has ``register(verbs)`` adding its subparsers.

Modules import their heavy dependencies inside the handlers, so ``cnnkit --help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib

# Order is the order of `cnnkit --help`.
_MODULES = (
    "train_cmd",
    "eval_cmd",
    "predict_cmd",
    "runs_cmd",
    "data_cmd",
    "models_cmd",
    "tune_cmd",
    "explain_cmd",
    "report_cmd",
    "serve_cmd",
    "gradio_cmd",
    "export_cmd",
    "push_cmd",
    "deploy_cmd",
    "monitor_cmd",
)


def register_all(verbs: argparse._SubParsersAction) -> None:
    for name in _MODULES:
        importlib.import_module(f"cnnkit.commands.{name}").register(verbs)
