"""``reference.json`` at the end of a training: what the served model's traffic is compared with.

The statistics themselves are defined once in ``cnnkit.evaluation.reference``; this module only
feeds them the run's validation images and the trained model's probabilities on them.
"""
from __future__ import annotations

import logging

import torch

from cnnkit.data.dataset import Dataset
from cnnkit.data.loaders import DeviceData
from cnnkit.data.transforms import BatchPipeline
from cnnkit.engine import Engine
from cnnkit.evaluation.evaluate import predict_logits
from cnnkit.evaluation.reference import REFERENCE_FILE, build_reference
from cnnkit.runs import RunDir

log = logging.getLogger(__name__)
MAX_IMAGES = 5000  # enough for stable deciles; more only costs training time


def store_reference(run: RunDir, model: torch.nn.Module, ds: Dataset, pipe: BatchPipeline, engine: Engine,
                    batch_size: int, seed: int = 0) -> None:
    """Write ``reference.json``; the training is done, so a failure here is a warning, not a lost run."""
    try:
        split, images = ("val", ds.val) if ds.val is not None and len(ds.val) else ("test", ds.test)
        if images is None or not len(images):
            split, images = "train", ds.train
        if len(images) > MAX_IMAGES:
            pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:MAX_IMAGES]
            images = images.subset(pick.sort().values)
        logits = predict_logits(model, DeviceData.from_set(images, engine.device), pipe, batch_size, engine)
        probs = torch.softmax(logits, dim=1).numpy()
        record = build_reference(images.images.numpy(), probs, ds.train.labels.numpy(), ds.classes, split, seed)
        run.write(REFERENCE_FILE, record)
    except Exception as exc:  # noqa: BLE001 - drift monitoring is optional; the trained run must not be lost
        log.warning("cnnkit: could not store the reference statistics of %s: %s: %s", run.ref, type(exc).__name__, exc)
