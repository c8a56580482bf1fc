"""What each training option means in Keras, and the options Keras cannot honour (refused by name).

The meanings follow cnnkit's PyTorch loop (``cnnkit.training.loop``) exactly where Keras allows:
the same peak lr and per-batch schedule functions, Nesterov SGD, Adam's beta1 = momentum and
eps 1e-8, weight decay only on conv/dense kernels (coupled L2 for sgd/adam, decoupled for adamw),
PyTorch's weighted, label-smoothed cross-entropy, gradient-norm clipping, early stopping on
``--monitor``.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from cnnkit.config import Config
from cnnkit.errors import CnnkitError
from cnnkit.models.keras.models import check_available

# The options the Keras path gives the same meaning as PyTorch's loop; any other option set to a
# value other than its default (or one listed below as equivalent to it) is refused by name, so
# an option added to the PyTorch loop later is refused here until someone teaches Keras it.
HONOURED = {
    "model": {"name", "kwargs"},
    "train": {"epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup_epochs",
              "step_epochs", "step_gamma", "label_smoothing", "class_weights", "early_stopping", "monitor",
              "grad_clip", "seed", "deterministic", "threads", "eval_batch_size", "progress", "framework"},
}
# Values that mean "nothing to do" for the three Keras models on a CPU.
EQUIVALENT = {
    "train.device": {"auto", "cpu"}, "train.amp": {"auto", "off"}, "train.channels_last": {"auto", "on"},
    "train.whiten": {"auto", "off"}, "train.freeze": {"auto", "none"}, "train.backbone_lr_mult": {None, 1.0},
}


def check_keras_options(cfg: Config) -> None:
    """CnnkitError naming the first option the Keras path cannot honour."""
    check_available(cfg.model.name)
    for section in ("model", "train"):
        current, default = getattr(cfg, section), type(getattr(cfg, section))()
        for f in dataclasses.fields(current):
            name, value = f"{section}.{f.name}", getattr(current, f.name)
            if f.name in HONOURED[section] or value == getattr(default, f.name) or value in EQUIVALENT.get(name, ()):
                continue
            raise CnnkitError(f"{name}={value!r} cannot be honoured with --framework keras (PyTorch only)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise CnnkitError("--framework keras trains in one process; torchrun (data-parallel) is PyTorch only")


def make_optimizer(keras: Any, cfg: Any, lr: float) -> Any:
    """The optimizer of ``cfg.optimizer``; weight decay is applied in the step (see ``loss_and_grads``)."""
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr, beta_1=cfg.momentum, beta_2=0.999, epsilon=1e-8)
    opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay, beta_1=cfg.momentum, beta_2=0.999, epsilon=1e-8)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # as PyTorch's no-decay group
    return opt


def decays(variable: Any) -> bool:
    """Weight decay on kernels only (PyTorch's rule: no decay on 1-D tensors, biases and norms)."""
    return len(variable.shape) > 1


def torch_cross_entropy(tf: Any, logits: Any, labels: Any, weight: Any, smoothing: float) -> Any:
    """``torch.nn.CrossEntropyLoss(weight, label_smoothing)`` (mean reduction), in TensorFlow:
    sum_i [(1-e) w[y_i] nll_i + e/K sum_c w[c] (-log p_ic)] / sum_i w[y_i]."""
    logp = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    k = logits.shape[-1]
    w_y = tf.gather(weight, labels)
    nll = -tf.gather(logp, labels, axis=1, batch_dims=1)
    total = (1.0 - smoothing) * w_y * nll
    if smoothing:
        total += smoothing / k * -tf.reduce_sum(logp * weight[None, :], axis=1)
    return tf.reduce_sum(total) / tf.reduce_sum(w_y)
