"""Evaluation of a finished run on a split of its data (metrics from predictions)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnkit.config import Config
from cnnkit.data.dataset import Dataset, ImageSet
from cnnkit.data.loaders import DeviceData, eval_batches
from cnnkit.data.transforms import BatchPipeline, pipelines_for
from cnnkit.data.sources import load_dataset
from cnnkit.engine import Engine, make_engine
from cnnkit.errors import CnnkitError
from cnnkit.runs import LoadedRun, load


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, data: DeviceData, pipeline: BatchPipeline, batch_size: int, engine: Engine) -> torch.Tensor:
    """Logits for a whole split, in order, as float32 on the CPU."""
    model.eval()
    outs = []
    for xb, _ in eval_batches(data, batch_size):
        with engine.autocast():
            outs.append(model(pipeline(xb)).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def evaluate_split(model: torch.nn.Module, data: DeviceData, pipeline: BatchPipeline, batch_size: int, engine: Engine, weight: torch.Tensor | None = None) -> dict[str, float]:
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
