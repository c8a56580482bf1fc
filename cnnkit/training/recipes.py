"""Default recipes: what ``cnnkit train --data NAME`` trains when no model is named.

A built-in dataset with a measured recipe gets it as its defaults, so the shortest command is
also the best one we know at that dataset's budget (the README's default job is ``cnnkit
train``: MNIST). Precedence: the config defaults < the recipe < ``--config FILE`` < flags. Only
when the model is not named (nor its arguments, ``--init`` or ``--pretrained``), by a file or a
flag: a recipe's options were tuned for its model, and naming any model (``--model cnn``) gives
the plain defaults exactly as before. Keras builds only the classic models, so recipes apply to
the PyTorch framework.

The figures behind each recipe (2-core CPU, `python benchmarks/train_recipe.py main`) are in
the README's benchmark table.
"""
from __future__ import annotations

import copy
from typing import Any

from cnnkit.config import DataConfig, merge

# The speed-run network and options (see training/whitening.py, groups.py, lookahead.py): widths
# 32/64/128 at MNIST's 28x28x1 cost about twice the classic `cnn` width 16 per image and reach
# 99.6+% in 8 epochs within 5 minutes on 2 cores; `cnn` w16 stops near 99.5% at that budget.
_SPEEDRUN_TRAIN = {"batch_size": 512, "optimizer": "sgd", "lr": 0.75, "momentum": 0.85, "weight_decay": 0.002,
                   "decoupled_wd": True, "norm_lr_mult": 64.0, "schedule": "triangle", "lookahead": True,
                   "label_smoothing": 0.2}

RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {"model": {"name": "airbench", "kwargs": {"widths": [32, 64, 128]}},
              "train": {"epochs": 8, **_SPEEDRUN_TRAIN}},
}


def with_recipe(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (only the options given) under the default recipe of its dataset, when one applies."""
    data = raw.get("data", {}).get("name", DataConfig.name)
    model, train = raw.get("model", {}), raw.get("train", {})
    if data not in RECIPES or model.keys() & {"name", "kwargs", "init", "pretrained"} or train.get("framework", "torch") != "torch":
        return raw
    return merge(copy.deepcopy(RECIPES[data]), raw)
