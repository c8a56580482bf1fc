"""The Keras training loop: ``fit_keras(model, data, TrainConfig) -> FitResult``.

The data side is cnnkit's own: the same uint8 splits, the same (seed, epoch) shuffles and the same
augmentation and normalization ops on whole batches (``cnnkit.data``), so both frameworks see the
same pixels in the same order; each batch then goes channels-last into one traced TensorFlow step
(forward, loss, gradients, optimizer), which is what ``model.fit`` runs too, minus its per-batch
callback machinery. Validation and test go through ``KerasModule`` and cnnkit's evaluation code.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit.config import TrainConfig
from cnnkit.data.dataset import ImageSet
from cnnkit.data.loaders import DeviceData, epoch_generator, steps_per_epoch, train_batches
from cnnkit.data.transforms import BatchPipeline
from cnnkit.engine import Engine
from cnnkit.errors import CnnkitError
from cnnkit.evaluation.evaluate import evaluate_split
from cnnkit.io import write_atomic
from cnnkit.models.keras import import_keras
from cnnkit.models.keras.module import KerasModule
from cnnkit.training.keras.options import decays, make_optimizer, torch_cross_entropy
from cnnkit.training.loop import SCHEDULES, Callback, FitResult, auto_class_weights, peak_lr

CHECKPOINT = "checkpoints/last-keras.safetensors"
# XLA-compiling the step (jit_compile) stays off until it is measured faster than TensorFlow's
# graph mode on a CPU: `python benchmarks/frameworks.py --jit` trains both ways and prints s/epoch.
JIT_COMPILE = False


@dataclass
class KerasState:
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)  # {"epoch", "value"}
    best_weights: list[np.ndarray] | None = None
    bad_epochs: int = 0
    epoch: int = -1  # the last finished epoch


def _step_fn(model: Any, optimizer: Any, cfg: TrainConfig, weight: Any) -> Any:
    import tensorflow as tf

    params = model.trainable_variables
    coupled = cfg.weight_decay if cfg.optimizer in ("sgd", "adam") else 0.0

    @tf.function(jit_compile=JIT_COMPILE, reduce_retracing=True)
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = torch_cross_entropy(tf, logits, y, weight, cfg.label_smoothing)
        grads = tape.gradient(loss, params)
        if cfg.grad_clip:
            grads, _ = tf.clip_by_global_norm(grads, cfg.grad_clip)
        if coupled:  # PyTorch's SGD/Adam weight_decay: L2 added to the gradient, after clipping
            grads = [g + coupled * v if decays(v) else g for g, v in zip(grads, params)]
        optimizer.apply_gradients(zip(grads, params))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
        return loss, correct

    return step


def _epoch(step: Any, optimizer: Any, data: DeviceData, pipeline: BatchPipeline, cfg: TrainConfig, epoch: int,
           lr_at: Any) -> tuple[float, float]:
    from tqdm.auto import tqdm

    gen = epoch_generator(cfg.seed, epoch)
    per_epoch = steps_per_epoch(len(data), cfg.batch_size)
    sums = np.zeros(3)  # loss*n, correct, n
    bar = tqdm(total=per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not cfg.progress)
    for i, (xb, yb) in enumerate(train_batches(data, cfg.batch_size, gen)):
        optimizer.learning_rate = lr_at(epoch * per_epoch + i)
        x = pipeline(xb, gen).permute(0, 2, 3, 1).contiguous().numpy()
        loss, correct = step(x, yb.to(torch.int32).numpy())
        sums += (float(loss) * len(yb), float(correct), len(yb))
        bar.update(1)
        if i % 25 == 0:
            bar.set_postfix(loss=f"{sums[0] / sums[2]:.4f}", acc=f"{sums[1] / sums[2]:.4f}")
    bar.close()
    return sums[0] / max(1.0, sums[2]), sums[1] / max(1.0, sums[2])


def _end_of_epoch(cfg: TrainConfig, st: KerasState, model: Any, epoch: int, metrics: dict[str, float]) -> bool:
    """Best-epoch tracking and early stopping, with the PyTorch loop's rules."""
    value = metrics.get(cfg.monitor)
    best = st.best.get("value")
    if value is not None and (best is None or (value < best if cfg.monitor == "val_loss" else value > best)):
        st.best, st.bad_epochs = {"epoch": epoch, "value": value}, 0
        if cfg.early_stopping:
            st.best_weights = [np.array(w) for w in model.get_weights()]
    else:
        st.bad_epochs += 1
    return bool(cfg.early_stopping and "val_loss" in metrics and st.bad_epochs >= cfg.early_stopping)


def fit_keras(model: Any, spec: dict[str, Any], train_set: ImageSet, val_set: ImageSet | None,
              pipelines: tuple[BatchPipeline, BatchPipeline], cfg: TrainConfig, engine: Engine, num_classes: int,
              callbacks: Sequence[Callback] = (), checkpoint: Path | None = None,
              after_epoch: Callable[[KerasState], None] | None = None) -> FitResult:
    """Train the Keras ``model``; with ``checkpoint`` (a path), save after each epoch and resume from
    it; ``after_epoch`` then sees the saved state (the run records history and status)."""
    import tensorflow as tf

    keras = import_keras()
    data = DeviceData.from_set(train_set, torch.device("cpu"))
    val = DeviceData.from_set(val_set, torch.device("cpu")) if val_set is not None and len(val_set) else None
    per_epoch = steps_per_epoch(len(data), cfg.batch_size)
    if per_epoch == 0:
        raise CnnkitError(f"{len(data)} training images is fewer than one batch of {cfg.batch_size}; lower --batch-size")
    weight_t = auto_class_weights(train_set.labels, num_classes) if cfg.class_weights == "auto" else None
    weight = tf.constant(weight_t.numpy() if weight_t is not None else np.ones(num_classes, np.float32))
    peak, total, warmup = peak_lr(cfg), max(1, cfg.epochs * per_epoch), int(cfg.warmup_epochs * per_epoch)
    factor = SCHEDULES[cfg.schedule]

    def lr_at(s: int) -> float:
        return peak * factor(s, total, warmup, cfg)

    optimizer = make_optimizer(keras, cfg, peak)
    optimizer.build(model.trainable_variables)
    st = load_checkpoint(checkpoint, model, optimizer) if checkpoint is not None and checkpoint.is_file() else KerasState()
    step, module, stopped = _step_fn(model, optimizer, cfg, weight), KerasModule(model, spec), False
    for epoch in range(st.epoch + 1, cfg.epochs):
        t0 = time.perf_counter()
        loss, acc = _epoch(step, optimizer, data, pipelines[0], cfg, epoch, lr_at)
        metrics = {"epoch": epoch + 1, "train_loss": loss, "train_accuracy": acc, "lr": lr_at((epoch + 1) * per_epoch)}
        if val is not None:
            v = evaluate_split(module, val, pipelines[1], cfg.eval_batch_size, engine, weight_t)
            metrics.update(val_loss=v["loss"], val_accuracy=v["accuracy"])
        metrics["seconds"] = time.perf_counter() - t0
        st.history.append(metrics)
        st.epoch = epoch
        stopped = _end_of_epoch(cfg, st, model, epoch, metrics)
        stopped = any([bool(cb(epoch, metrics)) for cb in callbacks]) or stopped
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, st)
        if after_epoch is not None:
            after_epoch(st)
        if stopped:
            break
    if cfg.early_stopping and st.best_weights is not None:
        model.set_weights(st.best_weights)
    best_epoch = int(st.best["epoch"]) + 1 if "epoch" in st.best else len(st.history)
    return FitResult(st.history, best_epoch, stopped, KerasModule(model, spec))


def save_checkpoint(path: Path, model: Any, optimizer: Any, st: KerasState) -> None:
    """Model and optimizer variables (safetensors: arrays only) and the loop's state (JSON header)."""
    from safetensors.numpy import save_file

    tensors = {f"model/{i}": np.asarray(v) for i, v in enumerate(model.variables)}
    tensors.update({f"optimizer/{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    for i, w in enumerate(st.best_weights or []):
        tensors[f"best/{i}"] = w
    meta = {"epoch": st.epoch, "history": st.history, "best": st.best, "bad_epochs": st.bad_epochs}
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    write_atomic(path, lambda p: save_file(tensors, str(p), metadata={"cnnkit": json.dumps(meta)}))


def load_checkpoint(path: Path, model: Any, optimizer: Any) -> KerasState:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = json.loads(f.metadata()["cnnkit"])
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    for prefix, variables in (("model", model.variables), ("optimizer", optimizer.variables)):
        for i, v in enumerate(variables):
            saved = arrays.get(f"{prefix}/{i}")
            # (safetensors stores a scalar, such as the step counter, with shape (1,))
            if saved is None or saved.size != int(np.prod(v.shape)):
                raise CnnkitError(f"checkpoint {path} does not match this model ({prefix} variable {i}); cannot resume")
            v.assign(saved.reshape(tuple(v.shape)))
    best = [arrays[f"best/{i}"] for i in range(len(model.get_weights())) if f"best/{i}" in arrays] or None
    return KerasState(list(meta["history"]), dict(meta["best"]), best, int(meta["bad_epochs"]), int(meta["epoch"]))
