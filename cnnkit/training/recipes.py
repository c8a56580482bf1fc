"""Default recipes: what ``cnnkit train --data NAME`` trains when no model is named.

A built-in dataset with a measured recipe gets it as its defaults, so the shortest command is
also the best one we know at that dataset's budget (the README's default job is ``cnnkit
train``: MNIST). Precedence: the config defaults < the recipe < ``--config FILE`` < flags. Only
when the model is not named (nor its arguments, ``--init`` or ``--pretrained``), by a file or a
flag: a recipe's options were tuned for its model, and naming any model (``--model cnn``) gives
the plain defaults exactly as before. Keras builds only the classic models, so recipes apply to
the PyTorch framework. Training that starts from learned weights (``--pretrained``, ``--init``)
gets the fine-tuning optimizer (FINETUNE) instead of a recipe.

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


# The optimizer when training starts from learned weights, chosen on the validation photos of the
# sign-language digits (benchmarks/finetune_sweep.py; the README's transfer section has the figures).
# Every layer trains at the full rate (--backbone-lr-mult 1): a tenth for the pretrained layers lost
# 20-30 points with 150 training photos, too few steps for a slowed backbone to adapt.
# ImageNet weights (--pretrained): AdamW at 3e-3, 7 points above Nesterov SGD at 10% of the photos.
# A cnnkit run (--init): SGD at lr 0.1 (4x the scratch default at batch 32), 27 points above it there.
# Naming --optimizer drops these (an lr chosen for AdamW means nothing to SGD); --lr alone overrides.
FINETUNE: dict[str, dict[str, Any]] = {
    "pretrained": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.01},
    "init": {"optimizer": "sgd", "lr": 0.1},
}


def with_recipe(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (only the options given) under the default recipe of its dataset, or under the
    fine-tuning defaults when it starts from learned weights."""
    data = raw.get("data", {}).get("name", DataConfig.name)
    model, train = raw.get("model", {}), raw.get("train", {})
    if train.get("framework", "torch") != "torch":
        return raw
    start = "pretrained" if model.get("pretrained") else "init" if model.get("init") else None
    if start is not None:
        return raw if "optimizer" in train else merge({"train": dict(FINETUNE[start])}, raw)
    if data not in RECIPES or model.keys() & {"name", "kwargs"}:
        return raw
    return merge(copy.deepcopy(RECIPES[data]), raw)
