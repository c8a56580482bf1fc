"""The training loop: ``fit(model, data, TrainConfig) -> FitResult``, in plain PyTorch.

One epoch is one function; optimizers and schedules come from small tables; checkpoints hold
everything a resumed run needs (model, optimizer, schedule, EMA, RNG, history), so a resumed
deterministic run ends exactly where an uninterrupted one would.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cnnkit.config import TrainConfig
from cnnkit.data.dataset import ImageSet
from cnnkit.data.loaders import DeviceData, epoch_generator, steps_per_epoch, train_index_batches
from cnnkit.data.transforms import BatchPipeline, alternating_flip_bits, alternating_flips
from cnnkit.engine import Engine
from cnnkit.errors import CnnkitError
from cnnkit.evaluation.evaluate import evaluate_split
from cnnkit.training import finetune, whitening
from cnnkit.training.groups import decouple_weight_decay, scale_norm_lr
from cnnkit.training.lookahead import Lookahead

# A callback sees each finished epoch's metrics; returning True stops training (e.g. a pruner).
Callback = Callable[[int, dict[str, float]], bool | None]
# A checkpoint function receives the state after each epoch; its tensors are the live ones, so it
# must serialize (or copy) them before returning.
CheckpointFn = Callable[[dict[str, Any]], None]

DEFAULT_LR = {"sgd": 0.1, "adam": 2e-3, "adamw": 2e-3}


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalization parameters (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


OPTIMIZERS: dict[str, Callable[[list, TrainConfig, float], torch.optim.Optimizer]] = {
    "sgd": lambda groups, c, lr: torch.optim.SGD(groups, lr=lr, momentum=c.momentum, nesterov=c.momentum > 0),
    "adam": lambda groups, c, lr: torch.optim.Adam(groups, lr=lr, betas=(c.momentum, 0.999)),
    "adamw": lambda groups, c, lr: torch.optim.AdamW(groups, lr=lr, betas=(c.momentum, 0.999)),
}


def peak_lr(cfg: TrainConfig) -> float:
    """The given lr, or the optimizer's default; SGD's scales linearly with the batch size."""
    if cfg.lr is not None:
        return cfg.lr
    base = DEFAULT_LR[cfg.optimizer]
    return base * cfg.batch_size / 128 if cfg.optimizer == "sgd" else base


def _onecycle(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    """Linear rise over the first 25% from 1/25 of the peak, then cosine down to ~0."""
    rise = max(1, int(0.25 * total))
    if step < rise:
        return 0.04 + 0.96 * step / rise
    return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - rise) / max(1, total - rise))))


def _cosine(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _step(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    if step < warmup:
        return (step + 1) / warmup
    per_epoch = max(1, total // cfg.epochs)
    return cfg.step_gamma ** (step // (per_epoch * cfg.step_epochs))


def _triangle(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    """airbench's: linear from 0.2 of the peak up to it over the first 23%, then linear down to 0.07
    (a high lr to the very end of a ~10-epoch run, where lookahead does the annealing's averaging)."""
    rise = max(1, int(0.23 * total))
    if step < rise:
        return 0.2 + 0.8 * step / rise
    return 1.0 - 0.93 * min(1.0, (step - rise) / max(1, total - rise))


SCHEDULES: dict[str, Callable[[int, int, int, TrainConfig], float]] = {
    "onecycle": _onecycle,
    "triangle": _triangle,
    "cosine": _cosine,
    "step": _step,
    "none": lambda step, total, warmup, cfg: 1.0,
}


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, cfg.epochs * per_epoch)
    warmup = int(cfg.warmup_epochs * per_epoch)
    factor = SCHEDULES[cfg.schedule]
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: factor(s, total, warmup, cfg))


def auto_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The dataset doctor's suggestion (inverse frequency, mean 1), so training and report agree."""
    from cnnkit.data.checks import class_weights

    return torch.tensor(class_weights(torch.bincount(labels, minlength=num_classes).tolist()), dtype=torch.float32)


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    model: nn.Module  # the weights to keep: EMA's when EMA is on, the best epoch's with early stopping


@dataclass
class _State:
    """Everything that changes during training and is saved in a checkpoint."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: AveragedModel | None
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)  # {"epoch", "value", "weights"}
    bad_epochs: int = 0
    lookahead: Lookahead | None = None

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def to_checkpoint(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "lookahead": self.lookahead.state_dict() if self.lookahead is not None else None,
            "history": [dict(h) for h in self.history],
            "best": dict(self.best),
            "bad_epochs": self.bad_epochs,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_checkpoint(self, ckpt: dict[str, Any]) -> int:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict(ckpt["ema"])
        if self.lookahead is not None and ckpt.get("lookahead") is not None:
            self.lookahead.load_state_dict(ckpt["lookahead"])
        self.history, self.best, self.bad_epochs = list(ckpt["history"]), dict(ckpt["best"]), int(ckpt["bad_epochs"])
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        return int(ckpt["epoch"])


def _all_reduce(values: torch.Tensor, engine: Engine) -> torch.Tensor:
    if engine.world > 1:
        dist.all_reduce(values)
    return values


def train_one_epoch(
    net: nn.Module,
    st: _State,
    data: DeviceData,
    pipeline: BatchPipeline,
    loss_fn: nn.Module,
    cfg: TrainConfig,
    engine: Engine,
    epoch: int,
) -> tuple[float, float]:
    """One pass over the shuffled training split; returns (mean loss, accuracy) over all processes."""
    from tqdm.auto import tqdm

    net.train()
    finetune.keep_frozen_norms_eval(net)
    gen = epoch_generator(cfg.seed, epoch, data.images.device)
    total = steps_per_epoch(len(data), cfg.batch_size, engine.world)
    sums = torch.zeros(3, dtype=torch.float64, device=engine.device)  # loss*n, correct, n
    bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not (cfg.progress and engine.is_main))
    alternate = pipeline.policy.hflip and pipeline.policy.flip_mode == "alternate"
    bits = alternating_flip_bits(len(data), cfg.seed) if alternate else None
    for step, idx in enumerate(train_index_batches(data, cfg.batch_size, gen, engine.rank, engine.world)):
        xb, yb = data.images[idx], data.labels[idx]
        x = pipeline(xb, gen, alternating_flips(bits, idx, epoch) if bits is not None else None)
        with engine.autocast():
            logits = net(x)
            loss = loss_fn(logits.float(), yb)
        st.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        st.optimizer.step()
        st.scheduler.step()
        if st.ema is not None:
            st.ema.update_parameters(st.model)
        if st.lookahead is not None:
            st.lookahead.step(st.model)
        with torch.no_grad():
            count = torch.tensor(len(yb), dtype=torch.float64, device=sums.device)
            sums += torch.stack([loss.detach().double() * len(yb), (logits.argmax(1) == yb).sum().double(), count])
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{sums[0].item() / max(1, sums[2].item()):.4f}", acc=f"{sums[1].item() / max(1, sums[2].item()):.4f}")
    bar.close()
    sums = _all_reduce(sums, engine)
    n = max(1.0, sums[2].item())
    return sums[0].item() / n, sums[1].item() / n



def _improved(cfg: TrainConfig, st: _State, metrics: dict[str, float]) -> bool:
    value = metrics.get(cfg.monitor)
    if value is None:
        return False
    best = st.best.get("value")
    better = best is None or (value < best if cfg.monitor == "val_loss" else value > best)
    return bool(better)


def _end_of_epoch(cfg: TrainConfig, st: _State, epoch: int, metrics: dict[str, float]) -> bool:
    """Track the best epoch; returns True when early stopping says to stop."""
    if _improved(cfg, st, metrics):
        st.best = {"epoch": epoch, "value": metrics[cfg.monitor]}
        if cfg.early_stopping:
            st.best["weights"] = copy.deepcopy(st.eval_model().state_dict())
        st.bad_epochs = 0
    else:
        st.bad_epochs += 1
    return bool(cfg.early_stopping and "val_loss" in metrics and st.bad_epochs >= cfg.early_stopping)


def _make_state(model: nn.Module, cfg: TrainConfig, per_epoch: int) -> _State:
    lr = peak_lr(cfg)
    groups = scale_norm_lr(_param_groups(model, cfg.weight_decay), model, lr, cfg.norm_lr_mult)
    groups = finetune.scale_backbone_lr(groups, model, cfg.backbone_lr_mult or 1.0, lr)
    if cfg.decoupled_wd:
        groups = decouple_weight_decay(groups, lr, cfg.batch_size)
    optimizer = OPTIMIZERS[cfg.optimizer](groups, cfg, lr)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema else None
    lookahead = Lookahead(model, cfg.epochs * per_epoch) if cfg.lookahead else None
    return _State(model, optimizer, make_scheduler(optimizer, cfg, per_epoch), ema, lookahead=lookahead)


def _wrap(model: nn.Module, cfg: TrainConfig, engine: Engine) -> nn.Module:
    """The module that runs forward/backward: maybe DDP-wrapped, maybe compiled."""
    net = model
    if engine.world > 1:
        ids = [engine.device.index] if engine.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    if cfg.compile:
        net = torch.compile(net)
    return net


def _loss(cfg: TrainConfig, train_set: ImageSet, num_classes: int, engine: Engine) -> nn.CrossEntropyLoss:
    """Cross-entropy with --label-smoothing, and with --class-weights auto the inverse class frequencies."""
    weight = auto_class_weights(train_set.labels, num_classes).to(engine.device) if cfg.class_weights == "auto" else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def fit(
    model: nn.Module,
    train_set: ImageSet,
    val_set: ImageSet | None,
    pipelines: tuple[BatchPipeline, BatchPipeline],
    cfg: TrainConfig,
    engine: Engine,
    num_classes: int,
    callbacks: Sequence[Callback] = (),
    checkpoint: CheckpointFn | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_set``; evaluate on ``val_set`` each epoch.

    ``pipelines`` is (train, eval): uint8 batches to normalized floats, with and without
    augmentation. ``checkpoint`` receives the state after each epoch (on the main process);
    ``resume`` is such a state, from which training continues.
    """
    model.to(engine.device)
    if engine.channels_last:
        model.to(memory_format=torch.channels_last)
    train_data = DeviceData.from_set(train_set, engine.device)
    val_data = DeviceData.from_set(val_set, engine.device) if val_set is not None and len(val_set) else None
    per_epoch = steps_per_epoch(len(train_data), cfg.batch_size, engine.world)
    if per_epoch == 0:
        raise CnnkitError(f"{len(train_data)} training images is fewer than one batch of {cfg.batch_size}; lower --batch-size")
    loss_fn = _loss(cfg, train_set, num_classes, engine)
    # Before the optimizer is built: the whitened weights are frozen, so they get no param group.
    whitened = whitening.maybe_whiten(model, cfg.whiten, train_set.images, pipelines[1])
    st = _make_state(model, cfg, per_epoch)
    # After the optimizer: frozen parameters stay in its groups, so --unfreeze-at can train them.
    freezer = finetune.Freezer.for_model(model, cfg.freeze, cfg.unfreeze_at)
    start = st.load_checkpoint(resume) + 1 if resume is not None else 0
    net = _wrap(model, cfg, engine)
    stopped = False
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        freezer.set_epoch(epoch)
        if whitened is not None and engine.world == 1:  # DDP fixes the trained parameters when it wraps
            whitening.set_whitening_bias_trainable(whitened, epoch, cfg.whiten_bias_epochs)
        train_loss, train_acc = train_one_epoch(net, st, train_data, pipelines[0], loss_fn, cfg, engine, epoch)
        if st.lookahead is not None and epoch + 1 == cfg.epochs:
            st.lookahead.finish(model)
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc, "lr": st.scheduler.get_last_lr()[0]}
        if val_data is not None:
            val = evaluate_split(st.eval_model(), val_data, pipelines[1], cfg.eval_batch_size, engine, loss_fn.weight)
            metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        metrics["seconds"] = time.perf_counter() - t0
        st.history.append(metrics)
        stopped = _end_of_epoch(cfg, st, epoch, metrics)
        stopped = any([bool(cb(epoch, metrics)) for cb in callbacks]) or stopped
        if checkpoint is not None and engine.is_main:
            checkpoint(st.to_checkpoint(epoch))
        if stopped:
            break
    return _result(st, cfg, stopped)


def _result(st: _State, cfg: TrainConfig, stopped: bool) -> FitResult:
    final = st.eval_model()
    if cfg.early_stopping and "weights" in st.best:
        final.load_state_dict(st.best["weights"])
    best_epoch = int(st.best["epoch"]) + 1 if "epoch" in st.best else len(st.history)
    return FitResult(st.history, best_epoch, stopped, final)
