"""The default search space of each model family (``cnnkit tune`` without ``--space``).

Written in the space file's own format (``space``), so a default space and a user's file are read by
the same parser, and ``extends: default`` in a file starts from these.
"""
from __future__ import annotations

from typing import Any

from cnnkit.tuning.space import Space

# Learning-rate ranges per optimizer: SGD's useful rates are ~30x Adam's.
LR_RANGES = {"sgd": [0.01, 0.5], "adam": [1e-4, 1e-2], "adamw": [1e-4, 1e-2]}
_DROPOUT = {"low": 0.0, "high": 0.5}
_WIDTH_SCALE = {"low": 0.25, "high": 1.0}
# What each family adds to the common space (options its builder has that matter most).
FAMILY_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "cnn": {"width": {"low": 16, "high": 64, "step": 8}, "dropout": _DROPOUT},
    "baseline-cnn": {"dropout": {"low": 0.0, "high": 0.6}},
    "alexnet": {"width": _WIDTH_SCALE, "dropout": _DROPOUT},
    "vgg11": {"width": _WIDTH_SCALE, "dropout": _DROPOUT},
    "vgg16": {"width": _WIDTH_SCALE, "dropout": _DROPOUT},
    "googlenet": {"dropout": _DROPOUT},
}


def common_params(max_epochs: int) -> dict[str, dict[str, Any]]:
    """Every model's space: optimization, regularization, augmentation and the epochs budget.

    The epochs budget runs from a quarter of ``--epochs`` up to ``--epochs`` itself, so
    ``--epochs`` is the most any trial trains (and Hyperband's maximum resource).
    """
    return {
        "optimizer": {"choices": ["sgd", "adamw"]},
        "lr": {"log": True, "by": "optimizer", "ranges": {k: LR_RANGES[k] for k in ("sgd", "adamw")}},
        "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True},
        "batch_size": {"choices": [64, 128, 256]},
        "schedule": {"choices": ["onecycle", "cosine"]},
        "label_smoothing": {"low": 0.0, "high": 0.2},
        "augment": {"choices": ["none", "light", "strong"]},
        "epochs": {"low": max(1, max_epochs // 4), "high": max_epochs},
    }


def default_space(model: str, max_epochs: int, builder_options: dict[str, Any]) -> Space:
    """The model family's default space; unknown families get dropout when their builder has it."""
    raw = common_params(max_epochs)
    family = FAMILY_PARAMS.get(model)
    if family is None:
        family = {"dropout": _DROPOUT} if "dropout" in builder_options else {}
    raw.update(family)
    return Space.from_dict(raw)
