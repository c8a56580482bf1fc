"""Evaluation of a finished run on a split of its data (metrics from predictions).

``evaluate_split``/``evaluate_run`` give loss and accuracy (used while training). The full
evaluation (``evaluate_loaded``/``evaluate_full``) adds every metric of ``cnnkit.evaluation.metrics`` on the
clean split and on corrupted variants of it (``cnnkit.evaluation.robustness``), optionally with test-time
augmentation, and stores each result with the run under
``eval/<split>-<split checksum>/<variant>[+tta].json`` (+ ``.npz`` with the per-image
log-probabilities), so ``runs compare``, ``explain --errors`` and ``report`` reuse it.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit.config import Config
from cnnkit.data.dataset import Dataset, ImageSet, tensor_checksum
from cnnkit.data.loaders import DeviceData
from cnnkit.data.sources import load_dataset
from cnnkit.data.transforms import BatchPipeline, pipelines_for
from cnnkit.engine import Engine, make_engine
from cnnkit.errors import CnnkitError
from cnnkit.evaluation.metrics import BOOTSTRAP, classification_metrics
from cnnkit.evaluation.robustness import Variant, apply_variant, describe, resolved_value, tta_views
from cnnkit.io import write_atomic
from cnnkit.runs import LoadedRun, RunDir, load


@torch.inference_mode()
def _batch_logits(model: torch.nn.Module, images: torch.Tensor, pipeline: BatchPipeline, batch_size: int,
                  engine: Engine, tta_kind: str | None = None) -> Iterator[list[torch.Tensor]]:
    """For each batch of uint8 ``images``, in order: the float32 logits of each view of it (with
    ``tta_kind``, the test-time views of ``robustness.tta_views``; else the images themselves)."""
    model.eval()
    for start in range(0, len(images), batch_size):
        xb = images[start:start + batch_size].to(engine.device)
        logits = []
        for view in tta_views(xb, tta_kind) if tta_kind else [xb]:
            with engine.autocast():
                logits.append(model(pipeline(view)).float())
        yield logits


def predict_logits(model: torch.nn.Module, data: DeviceData, pipeline: BatchPipeline, batch_size: int, engine: Engine) -> torch.Tensor:
    """Logits for a whole split, in order, as float32 on the CPU."""
    outs = [views[0].cpu() for views in _batch_logits(model, data.images, pipeline, batch_size, engine)]
    return torch.cat(outs) if outs else torch.empty(0)


def evaluate_split(model: torch.nn.Module, data: DeviceData, pipeline: BatchPipeline, batch_size: int, engine: Engine,
                   weight: torch.Tensor | None = None) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on a split."""
    logits = predict_logits(model, data, pipeline, batch_size, engine)
    labels = data.labels.cpu()
    loss = torch.nn.functional.cross_entropy(logits, labels, weight=weight.cpu() if weight is not None else None).item()
    return {"loss": loss, "accuracy": (logits.argmax(1) == labels).float().mean().item()}


def run_dataset(loaded: LoadedRun, data: str | None = None, data_dir: str | None = None) -> Dataset:
    """The run's own dataset (same split seed), or another one checked to have the same classes."""
    cfg = Config.from_dict(loaded.config)
    if data is not None:
        cfg.data.name = data
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    cfg.data.limit = None
    cfg.data.channels = loaded.spec["in_channels"]
    if cfg.data.image_size is None and data is not None:
        cfg.data.image_size = loaded.spec["preprocess"]["stored_size"]
    ds = load_dataset(cfg.data, cfg.train.seed)
    if ds.classes != loaded.classes:
        raise CnnkitError(f"{ds.name} has classes {ds.classes[:5]}... but {loaded.ref} was trained on {loaded.classes[:5]}...")
    return ds


def evaluate_run(ref: str, runs_dir: str | Path | None = None, data: str | None = None, data_dir: str | None = None,
                 split: str = "test", batch_size: int = 1024) -> dict[str, Any]:
    engine = make_engine()
    loaded = load(ref, runs_dir, engine.device)
    ds = run_dataset(loaded, data, data_dir)
    subset: ImageSet | None = ds.splits().get(split)
    if subset is None or len(subset) == 0:
        raise CnnkitError(f"{ds.name} has no {split} split to evaluate {loaded.ref} on")
    pipe = pipelines_for(loaded.spec["preprocess"], "none")[1]
    metrics = evaluate_split(loaded.model, DeviceData.from_set(subset, engine.device), pipe, batch_size, engine)
    recorded = loaded.run.read("data.json", {}).get("checksum")
    return {
        "run": loaded.ref, "accuracy": metrics["accuracy"], "loss": metrics["loss"], "split": split,
        "data": ds.name, "images": len(subset), "data_checksum": ds.checksum,
        "same_data_as_training": recorded == ds.checksum if data is None else None,
    }


# --- the full evaluation: every metric, variants, TTA, stored with the run ----------------------

EVAL_DIR = "eval"
# Bump when a stored result's content changes meaning, so old caches are recomputed, not misread.
RESULT_FORMAT = 2  # 2: per-class ROC AUC and average precision


@dataclass
class PredictionSet:
    """One variant's per-image predictions: log-probabilities (N, K) and the true labels (N,)."""

    log_probs: np.ndarray
    labels: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.log_probs.argmax(1) == self.labels


@dataclass
class EvalResult:
    """What ``evaluate_loaded`` returns: the JSON-ready summary and the predictions behind it."""

    summary: dict[str, Any]
    predictions: dict[str, PredictionSet]
    subset: ImageSet


def split_key(split: str, subset: ImageSet) -> str:
    """Names the exact images evaluated: a changed split gets a new folder, never a stale result."""
    return f"{split}-{tensor_checksum(subset.images, subset.labels)[:16]}"


def result_key(variant: Variant, tta: bool) -> str:
    return variant.key + ("+tta" if tta else "")


@torch.inference_mode()
def predict_log_probs(model: torch.nn.Module, images: torch.Tensor, pipeline: BatchPipeline, batch_size: int,
                      engine: Engine, tta_kind: str | None = None) -> np.ndarray:
    """Log-probabilities (N, K) float32 of uint8 images; with ``tta_kind``, of the mean probability
    over the test-time views of ``robustness.tta_views``."""
    outs = []
    for views in _batch_logits(model, images, pipeline, batch_size, engine, tta_kind):
        lps = [torch.log_softmax(logits, dim=1) for logits in views]
        # log of the mean probability over the views, computed in log space (no underflow).
        lp = lps[0] if len(lps) == 1 else torch.logsumexp(torch.stack(lps), 0) - math.log(len(lps))
        outs.append(lp.cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)


def _weights_stamp(run: RunDir) -> list[int]:
    st = run.weights_file.stat()
    return [st.st_size, st.st_mtime_ns]


def _cached(run: RunDir, rel: str, meta: dict[str, Any]) -> tuple[dict[str, Any], PredictionSet] | None:
    stored = run.read(rel + ".json")
    npz = run.file(rel + ".npz")
    if not stored or stored.get("meta") != meta or not npz.is_file():
        return None
    with np.load(npz, allow_pickle=False) as z:  # plain arrays only: never unpickle from disk
        return stored["metrics"], PredictionSet(z["log_probs"], z["labels"])


def _store(run: RunDir, rel: str, meta: dict[str, Any], metrics: dict[str, Any], pred: PredictionSet) -> None:
    write_atomic(run.file(rel + ".npz"), lambda p: _savez(p, pred))
    run.write(rel + ".json", {"meta": meta, "metrics": metrics})


def _savez(path: Path, pred: PredictionSet) -> None:
    with open(path, "wb") as f:  # a file object, so numpy does not append ".npz" to the temp name
        np.savez_compressed(f, log_probs=pred.log_probs.astype(np.float32), labels=pred.labels.astype(np.int64))


def _one_variant(loaded: LoadedRun, subset: ImageSet, variant: Variant, tta: bool,
                 ctx: dict[str, Any]) -> tuple[dict[str, Any], PredictionSet]:
    pre = loaded.spec["preprocess"]
    meta = {"format": RESULT_FORMAT, "variant": variant.name, "value": resolved_value(variant, subset.images.shape[-1]),
            "seed": ctx["seed"], "tta": tta, "resamples": ctx["resamples"], "weights": _weights_stamp(loaded.run)}
    rel = f"{EVAL_DIR}/{ctx['key']}/{result_key(variant, tta)}"
    if ctx["cache"] and (hit := _cached(loaded.run, rel, meta)):
        return hit
    images = apply_variant(subset.images, variant, pre["kind"], ctx["seed"])
    log_probs = predict_log_probs(loaded.model, images, ctx["pipe"], ctx["batch_size"], ctx["engine"], pre["kind"] if tta else None)
    pred = PredictionSet(log_probs, subset.labels.numpy())
    metrics = classification_metrics(log_probs, pred.labels, loaded.classes, resamples=ctx["resamples"], seed=ctx["seed"])
    metrics.update(variant=variant.label(), value=meta["value"], tta=tta,
                   description=describe(variant, subset.images.shape[-1]) + (", test-time augmentation" if tta else ""))
    _store(loaded.run, rel, meta, metrics, pred)
    return metrics, pred


def evaluate_loaded(loaded: LoadedRun, ds: Dataset, split: str = "test", variants: Sequence[Variant] = (Variant("clean"),),
                    tta: bool = False, batch_size: int = 1024, engine: Engine | None = None,
                    resamples: int = BOOTSTRAP, seed: int = 0, cache: bool = True, limit: int | None = None) -> EvalResult:
    """Every metric for every (variant, tta) on one split of ``ds`` (its first ``limit`` images);
    stored results are reused."""
    subset = ds.splits().get(split)
    if subset is None or len(subset) == 0:
        raise CnnkitError(f"{ds.name} has no {split} split to evaluate {loaded.ref} on "
                          "(a folder needs --test-fraction > 0 at training, or pass --data with a test split)")
    if limit is not None:
        if limit < 1:
            raise CnnkitError(f"--limit must be >= 1, got {limit}")
        subset = subset.subset(torch.arange(min(limit, len(subset))))
    engine = engine or make_engine()
    ctx = {"key": split_key(split, subset), "pipe": pipelines_for(loaded.spec["preprocess"], "none")[1], "seed": seed,
           "batch_size": batch_size, "engine": engine, "resamples": resamples, "cache": cache}
    results: dict[str, dict[str, Any]] = {}
    preds: dict[str, PredictionSet] = {}
    for variant in variants:
        for with_tta in ((False, True) if tta else (False,)):
            key = result_key(variant, with_tta)
            results[key], preds[key] = _one_variant(loaded, subset, variant, with_tta, ctx)
    main = results.get("clean") or next(iter(results.values()))
    recorded = loaded.run.read("data.json", {}).get("checksum")
    summary = {
        "run": loaded.ref, "model": loaded.spec.get("name"), "accuracy": main["accuracy"], "loss": main["loss"],
        "split": split, "data": ds.name, "images": len(subset), "data_checksum": ds.checksum,
        "split_key": ctx["key"], "same_data_as_training": recorded == ds.checksum, "classes": loaded.classes,
        "stored_in": str(loaded.run.file(f"{EVAL_DIR}/{ctx['key']}")), "results": results,
    }
    return EvalResult(summary, preds, subset)


def evaluate_full(ref: str, runs_dir: str | Path | None = None, data: str | None = None, data_dir: str | None = None,
                  split: str = "test", batch_size: int = 1024, variants: Sequence[Variant] = (Variant("clean"),),
                  tta: bool = False, resamples: int = BOOTSTRAP, cache: bool = True, limit: int | None = None) -> dict[str, Any]:
    """``cnnkit eval --json``: the legacy keys (run, accuracy, loss, split, data, images, ...) plus
    ``results``: one full metrics dict per variant (``clean``, ``noise``, ``clean+tta``, ...)."""
    engine = make_engine()
    loaded = load(ref, runs_dir, engine.device)
    ds = run_dataset(loaded, data, data_dir)
    result = evaluate_loaded(loaded, ds, split, variants, tta, batch_size, engine, resamples, cache=cache, limit=limit)
    if data is not None:
        result.summary["same_data_as_training"] = None
    return result.summary
