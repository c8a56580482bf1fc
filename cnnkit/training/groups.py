"""Optimizer parameter-group adjustments from the speed-run recipes, applied to any model.

Both take the groups the loop already built (``loop._param_groups``, and whatever other options
split them further) and return new groups, so they compose with other per-group settings: a
group's own ``lr`` (if another option set one) is the base they scale from.

- ``norm_lr_mult``: normalization layers' parameters (BatchNorm shifts and scales) get their own
  learning rate. Why: after BN the conv weights are scale-invariant and train well at a modest lr,
  while BN's shifts are few, well-conditioned parameters that can take a much larger one (airbench
  uses 64x); one lr for both leaves one of them mistuned.
- ``decoupled_wd``: ``weight_decay`` becomes the fraction each weight shrinks per step per 1024
  images (so per epoch it does not depend on the batch size), following the lr schedule but not
  the lr's value or the multiplier above; PyTorch's SGD multiplies its ``weight_decay`` by the
  group's lr, so we store ``wd * batch/1024 / group_lr``. Why: then lr, batch size and decay can be
  tuned one at a time (changing the lr no longer changes the regularisation). The decay enters
  SGD's momentum like a gradient, so in steady state it is amplified by 1/(1-momentum).
"""
from __future__ import annotations

from typing import Any

from torch import nn

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
WD_IMAGES = 1024  # decoupled weight decay is expressed per this many images


def norm_parameter_ids(model: nn.Module) -> set[int]:
    return {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)}


def scale_norm_lr(groups: list[dict[str, Any]], model: nn.Module, lr: float, mult: float) -> list[dict[str, Any]]:
    """Split each group into its normalization parameters (lr x ``mult``) and the rest."""
    if mult == 1.0:
        return groups
    norm_ids = norm_parameter_ids(model)
    out: list[dict[str, Any]] = []
    for group in groups:
        params = list(group["params"])
        norm = [p for p in params if id(p) in norm_ids]
        rest = [p for p in params if id(p) not in norm_ids]
        if rest:
            out.append({**group, "params": rest})
        if norm:
            out.append({**group, "params": norm, "lr": group.get("lr", lr) * mult})
    return out


def decouple_weight_decay(groups: list[dict[str, Any]], lr: float, batch_size: int) -> list[dict[str, Any]]:
    """Rewrite each group's ``weight_decay`` (per 1024 images, decoupled) into PyTorch's coupled form."""
    out = []
    for group in groups:
        wd = float(group.get("weight_decay", 0.0))
        group_lr = float(group.get("lr", lr))
        out.append({**group, "weight_decay": wd * batch_size / WD_IMAGES / group_lr if wd else 0.0})
    return out
