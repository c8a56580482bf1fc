"""One training run end to end: data -> model -> fit -> a finished, versioned run.

Everything that can be refused (unknown model, unusable data, bad options) is checked before
the run's folder is created, so bad input leaves nothing half-written under ``runs/``.
"""
from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnkit.config import Config
from cnnkit.data.dataset import Dataset
from cnnkit.data.loaders import DeviceData
from cnnkit.data.sources import load_dataset
from cnnkit.data.transforms import BatchPipeline, Normalization, pipelines_for
from cnnkit.engine import Engine, init_distributed, make_engine, seed_everything
from cnnkit.errors import CnnkitError
from cnnkit.evaluation.evaluate import evaluate_split
from cnnkit.models import build_model, pretrained_input, resolved_options
from cnnkit.runs import RunDir, RunStore, slug
from cnnkit.training import finetune
from cnnkit.training.loop import Callback, FitResult, fit
from cnnkit.training.reference_stats import store_reference

log = logging.getLogger(__name__)
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class TrainOutcome:
    run: RunDir
    metrics: dict[str, Any]
    history: list[dict[str, float]]


def default_name(cfg: Config, ds: Dataset) -> str:
    return slug(f"{ds.name}-{cfg.model.name}", "run")


def preprocessing(cfg: Config, ds: Dataset) -> dict[str, Any]:
    """How raw images become model inputs; stored with the run so predict needs no flags."""
    pretrained_rgb = cfg.model.pretrained and ds.channels == 3
    shipped = pretrained_input(cfg.model.name) if pretrained_rgb else None  # e.g. EfficientNet-Lite's 0.5/0.5
    norm = Normalization(tuple(shipped["mean"]), tuple(shipped["std"])) if shipped else IMAGENET
    norm = norm if pretrained_rgb else Normalization.from_images(ds.train.images)
    return {
        "kind": ds.kind,
        "channels": ds.channels,
        "stored_size": ds.image_size,
        "input_size": cfg.data.image_size or ds.image_size,
        "resize": "shorter-side, center-crop",
        "mean": list(norm.mean),
        "std": list(norm.std),
    }


def model_spec(cfg: Config, ds: Dataset, pre: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": cfg.model.name,
        "kwargs": resolved_options(cfg.model.name, cfg.model.kwargs),
        "num_classes": ds.num_classes,
        "in_channels": ds.channels,
        "image_size": pre["input_size"],
        "classes": list(ds.classes),
        "preprocess": pre,
    }


def environment(engine: Engine) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from cnnkit import __version__

    def pkg(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                                timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cnnkit": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
        "torchvision": pkg("torchvision"), "numpy": pkg("numpy"), "platform": platform.platform(), "device": str(engine.device),
        "threads": torch.get_num_threads(), "world_size": engine.world, "git_commit": commit or None,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def data_record(ds: Dataset) -> dict[str, Any]:
    counts = {name: len(split) for name, split in ds.splits().items()}
    return {"name": ds.name, "source": ds.source, "checksum": ds.checksum, "classes": ds.classes,
            "kind": ds.kind, "counts": counts, "warnings": ds.warnings}


def _prepare(cfg: Config, engine: Engine, progress: bool,
             fresh: bool = True) -> tuple[Dataset, torch.nn.Module, dict[str, Any], dict[str, Any] | None]:
    """Load and check the data and build the model: all the refusals happen here. ``fresh``:
    a new run (a resumed one takes its weights from its checkpoint, not from --init)."""
    from cnnkit.data.checks import require_usable

    finetune.resolve_defaults(cfg)
    parent = finetune.open_parent(cfg) if fresh else None
    shipped = pretrained_input(cfg.model.name) if cfg.model.pretrained else None
    if shipped and cfg.data.image_size is None:
        cfg.data.image_size = shipped["size"]  # the size the weights were trained at, unless told otherwise
    ds = load_dataset(cfg.data, cfg.train.seed, progress and engine.is_main)
    require_usable(ds)
    pre = preprocessing(cfg, ds)
    seed_everything(cfg.train.seed, cfg.train.deterministic)  # the model's init is part of the run
    model = build_model(cfg.model.name, ds.num_classes, ds.channels, pre["input_size"], cfg.model.pretrained, **cfg.model.kwargs)
    init = finetune.prepare_model(cfg, model, pre, parent, list(ds.classes), ds.name)
    return ds, model, pre, init


def _open_run(cfg: Config, ds: Dataset, spec: dict[str, Any], engine: Engine, init: dict[str, Any] | None = None) -> RunDir:
    """Create the version folder and its records; everything is computed first, so a failure
    here removes the folder instead of leaving half a run behind."""
    files = {"model.json": spec, "data.json": data_record(ds), "env.json": environment(engine)}
    if init is not None:
        files[finetune.INIT_FILE] = init
    store = RunStore(cfg.run.runs_dir)
    run = store.create(cfg.run.name or default_name(cfg, ds))
    try:
        cfg.run.name = run.name
        run.save_config(cfg.to_dict())
        for name, obj in files.items():
            run.write(name, obj)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return run


def train_run(cfg: Config, resume: str | None = None, callbacks: Sequence[Callback] = (), on_created: Any = None,
              tracking_parent: str | None = None) -> TrainOutcome:
    """Train a new version of a run (or resume one) and return it with its final metrics.

    ``tracking_parent``: with ``run.track``, the MLflow run (e.g. a tuning study's) to nest under."""
    init_distributed()
    run: RunDir | None = None
    if resume is not None:
        run, cfg = _resumable(resume, cfg.run.runs_dir)
    if cfg.run.track != "none":  # a mirror of the run (cnnkit.training.tracking); the run store stays the truth
        from cnnkit.training.tracking import tracked

        return tracked(cfg, lambda cbs, hook: _train_opened(cfg, run, cbs, hook), callbacks, on_created, tracking_parent)
    return _train_opened(cfg, run, callbacks, on_created)


def _train_opened(cfg: Config, run: RunDir | None, callbacks: Sequence[Callback], on_created: Any) -> TrainOutcome:
    """``train_run`` once the run to resume (if any) and its config are known."""
    ckpt = None
    if cfg.train.framework == "keras":  # the same flow and run folder, in Keras (cnnkit[keras])
        from cnnkit.training.keras.run import train_keras

        return train_keras(cfg, run, callbacks, on_created)
    if run is not None:
        ckpt = run.load_checkpoint()
    t = cfg.train
    engine = make_engine(t.device, t.amp, t.channels_last, t.threads)
    ds, model, pre, init = _prepare(cfg, engine, t.progress, fresh=run is None)  # run: the resumed one
    spec = model_spec(cfg, ds, pre)
    if run is None and engine.is_main:
        run = _open_run(cfg, ds, spec, engine, init)
        if init is not None:
            log.info("cnnkit: %s", finetune.summary_line(init))
    elif run is not None and run.read("data.json", {}).get("checksum") not in (None, ds.checksum):
        raise CnnkitError(f"the data of {run.ref} has changed since it started (checksum differs); cannot resume")
    if on_created is not None and run is not None:
        on_created(run)
    try:
        outcome = _train_and_save(cfg, engine, ds, model, pre, run, callbacks, ckpt)
    except BaseException as exc:
        if run is not None and engine.is_main:
            state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            run.set_status(state, error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    return outcome


def _resumable(ref: str, runs_dir: str | None) -> tuple[RunDir, Config]:
    run = RunStore(runs_dir).get(ref)
    state = run.status().get("state")
    if state == "finished":
        raise CnnkitError(f"run {run.ref} already finished; nothing to resume (train a new version instead)")
    cfg = Config.from_dict(run.load_config())
    if runs_dir is not None:
        cfg.run.runs_dir = runs_dir
    return run, cfg


def _train_and_save(cfg: Config, engine: Engine, ds: Dataset, model: torch.nn.Module, pre: dict[str, Any],
                    run: RunDir | None, callbacks: Sequence[Callback], ckpt: dict[str, Any] | None) -> TrainOutcome:
    pipes = pipelines_for(pre, cfg.data.augment, engine.channels_last, cfg.data.flip, cfg.data.pad)

    def checkpoint(state: dict[str, Any]) -> None:
        run.save_checkpoint(state)
        run.write("history.json", state["history"])

    if run is not None and engine.is_main:
        run.set_status("running", started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    t0 = time.perf_counter()
    result = fit(model, ds.train, ds.val, pipes, cfg.train, engine, ds.num_classes, callbacks,
                 checkpoint if run is not None else None, ckpt)
    seconds = time.perf_counter() - t0
    metrics = final_metrics(result, ds, pipes[1], cfg, engine, seconds)
    if run is not None and engine.is_main:
        run.save_weights(result.model, model_spec(cfg, ds, pre))
        run.write("history.json", result.history)
        run.write("metrics.json", metrics)
        _store_diagnosis(run, result.history)
        store_reference(run, result.model, ds, pipes[1], engine, cfg.train.eval_batch_size, cfg.train.seed)  # drift (issue 16)
        run.set_status("finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return TrainOutcome(run, metrics, result.history)


def _store_diagnosis(run: RunDir, history: list[dict[str, float]]) -> None:
    """curves.png + diagnosis.json beside the run; the training is done, so this never fails it."""
    try:
        from cnnkit.evaluation.diagnosis import save_training_diagnosis

        save_training_diagnosis(run, history)
    except Exception as exc:  # noqa: BLE001 - e.g. no matplotlib: a trained run must not be lost to a plot
        log.warning("cnnkit: could not store the training curves of %s: %s: %s", run.ref, type(exc).__name__, exc)


def final_metrics(result: FitResult, ds: Dataset, pipe: BatchPipeline, cfg: Config, engine: Engine, seconds: float) -> dict[str, Any]:
    """Test-set loss and accuracy of the kept weights; the test set is touched only here."""
    last = result.history[-1] if result.history else {}
    metrics: dict[str, Any] = {
        "epochs": len(result.history), "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "train_seconds": round(seconds, 2), "train_loss": last.get("train_loss"), "train_accuracy": last.get("train_accuracy"),
    }
    if ds.val is not None:
        val = evaluate_split(result.model, DeviceData.from_set(ds.val, engine.device), pipe, cfg.train.eval_batch_size, engine)
        metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
    if ds.test is not None and len(ds.test):
        test = evaluate_split(result.model, DeviceData.from_set(ds.test, engine.device), pipe, cfg.train.eval_batch_size, engine)
        metrics.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
    return metrics
