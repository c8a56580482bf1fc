"""Run-level explanation figures: a loaded run (+ images) -> (PNG bytes, JSON-ready summary).

Shared by ``cnnkit explain`` (which writes the PNGs) and ``cnnkit report`` (which embeds them).
The arrays come from ``cnnkit.explain.attribution``; the drawing from ``cnnkit.plots``. Images are named
by a file path or as ``SPLIT:INDEX`` (``test:17``) for an image of the run's own data.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit import plots
from cnnkit.errors import CnnkitError
from cnnkit.explain import attribution as explain
from cnnkit.runs import LoadedRun

_SPLIT_REF = re.compile(r"^(train|val|test):(\d+)$")


def load_images(loaded: LoadedRun, sources: Sequence[str], ds: Any = None) -> tuple[torch.Tensor, list[str], list[int | None]]:
    """Files (converted to the run's stored size and channels, as ``predict`` does) or ``split:i``
    references -> uint8 (N, C, S, S), display names, and the true label where known."""
    from cnnkit.predict import Predictor

    device = next(loaded.model.parameters()).device
    predictor = Predictor(loaded, device) if any(not _SPLIT_REF.match(s) or Path(s).exists() for s in sources) else None
    arrays, names, labels = [], [], []
    for src in sources:
        m = _SPLIT_REF.match(src)
        if m and not Path(src).exists():
            split = _split(ds, m.group(1), loaded)
            i = int(m.group(2))
            if i >= len(split):
                raise CnnkitError(f"{src}: the {m.group(1)} split has {len(split)} images (0..{len(split) - 1})")
            arrays.append(split.images[i].numpy())
            names.append(src)
            labels.append(int(split.labels[i]))
        else:
            arrays.append(predictor.to_uint8(src))
            names.append(Path(src).name)
            labels.append(None)
    return torch.from_numpy(np.stack(arrays)), names, labels


def _split(ds: Any, name: str, loaded: LoadedRun) -> Any:
    if ds is None:
        raise CnnkitError(f"{name}:N names an image of the run's data, which was not loaded")
    split = ds.splits().get(name)
    if split is None or len(split) == 0:
        raise CnnkitError(f"{ds.name} has no {name} split for {loaded.ref}")
    return split


def normalized(loaded: LoadedRun, images: torch.Tensor) -> torch.Tensor:
    """uint8 batch -> the normalized float batch the model takes (the run's eval pipeline)."""
    from cnnkit.data.transforms import pipelines_for

    device = next(loaded.model.parameters()).device
    return pipelines_for(loaded.spec["preprocess"], "none")[1](images.to(device))


def parse_target(loaded: LoadedRun, target: str | None) -> int | None:
    """A class name or index -> index; None stays None (each image's predicted class)."""
    if target is None:
        return None
    if target in loaded.classes:
        return loaded.classes.index(target)
    if target.lstrip("-").isdigit() and 0 <= int(target) < len(loaded.classes):
        return int(target)
    raise CnnkitError(f"unknown target class {target!r}; classes: {', '.join(loaded.classes)}")


def _stats(a: np.ndarray) -> dict[str, Any]:
    return {"shape": list(a.shape), "min": round(float(a.min()), 6), "max": round(float(a.max()), 6),
            "mean": round(float(a.mean()), 6), "std": round(float(a.std()), 6)}


def filters_figure(loaded: LoadedRun, layer: str | None = None) -> tuple[bytes, dict[str, Any]]:
    name, w = explain.filters(loaded.model, layer)
    return plots.filters_png(w, name), {"layer": name, **_stats(w)}


def feature_maps_figure(loaded: LoadedRun, image: torch.Tensor, title: str, layer: str | None = None) -> tuple[bytes, dict[str, Any]]:
    """``image``: uint8 (C, S, S)."""
    name, maps = explain.feature_maps(loaded.model, normalized(loaded, image[None]), layer)
    per_channel = maps[0].reshape(len(maps[0]), -1).mean(1)
    info = {"image": title, "layer": name, **_stats(maps[0]),
            "strongest_channels": [int(i) for i in np.argsort(-per_channel)[:8]]}
    return plots.feature_maps_png(image.numpy(), maps[0], f"{title} -> {name}"), info


def _caption(loaded: LoadedRun, name: str, probs: np.ndarray, target: int, label: int | None) -> str:
    pred = int(probs.argmax())
    truth = f"true {loaded.classes[label]}, " if label is not None else ""
    return f"{name[:18]}\n{truth}pred {loaded.classes[pred]} ({probs[pred]:.0%})\nmap for {loaded.classes[target]}"


def attribution_figure(loaded: LoadedRun, images: torch.Tensor, names: Sequence[str], labels: Sequence[int | None] = (),
                       target: int | None = None, layer: str | None = None,
                       methods: Sequence[str] = explain.METHODS) -> tuple[bytes, list[dict[str, Any]]]:
    """Grad-CAM (and integrated gradients against a black image) overlaid on each image."""
    x = normalized(loaded, images)
    baseline = explain.pixel_baseline(loaded.spec["preprocess"]).to(x.device)
    out = explain.explain_batch(loaded.model, x, target, layer, methods, baseline=baseline)
    labels = list(labels) or [None] * len(names)
    info, captions = [], []
    for i, name in enumerate(names):
        probs, t = out["probabilities"][i], int(out["targets"][i])
        captions.append(_caption(loaded, name, probs, t, labels[i]))
        pred = int(probs.argmax())
        info.append({"image": name, "true": loaded.classes[labels[i]] if labels[i] is not None else None,
                     "predicted": loaded.classes[pred], "probability": round(float(probs[pred]), 6),
                     "target": loaded.classes[t], "layer": out["layer"],
                     **{m: explain.map_summary(out[m][i]) for m in methods}})
    png = plots.attribution_png(list(images.numpy()), {m: out[m] for m in methods}, captions)
    return png, info


def errors_figures(loaded: LoadedRun, images: torch.Tensor, log_probs: np.ndarray, labels: np.ndarray,
                   confusion: np.ndarray, k: int = 16, pairs: int = 5, per_pair: int = 6) -> tuple[bytes, bytes, dict[str, Any]]:
    """The top-loss images, and examples of the most-confused class pairs, as two grids."""
    cls = loaded.classes
    idx, losses = explain.top_losses(log_probs, labels, k)
    preds = log_probs.argmax(1)
    titles = [f"#{i} true {cls[labels[i]]}\npred {cls[preds[i]]} ({np.exp(log_probs[i, preds[i]]):.0%})" for i in idx]
    top_png = plots.image_grid_png([images[i].numpy() for i in idx], titles, cols=8, cell=1.4,
                                   title=f"top {len(idx)} losses")
    tiles, tile_titles, pair_info = [], [], []
    for t, p, count in explain.confused_pairs(confusion, pairs):
        members = np.flatnonzero((labels == t) & (preds == p))[:per_pair]
        pair_info.append({"true": cls[t], "predicted": cls[p], "count": count, "examples": members.tolist()})
        for j in range(per_pair):
            tiles.append(images[members[j]].numpy() if j < len(members) else None)
            tile_titles.append(f"{cls[t]} -> {cls[p]} ({count}x)" if j == 0 else (f"#{members[j]}" if j < len(members) else ""))
    pair_png = plots.image_grid_png(tiles, tile_titles, cols=per_pair, cell=1.4, title="most confused pairs (true -> predicted)")
    info = {"top_losses": [{"index": int(i), "true": cls[labels[i]], "predicted": cls[preds[i]], "loss": round(float(loss), 6)}
                           for i, loss in zip(idx, losses)], "confused_pairs": pair_info}
    return top_png, pair_png, info
