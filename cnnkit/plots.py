"""Figures as PNG bytes (matplotlib, imported inside each function).

Figures are built with ``matplotlib.figure.Figure`` and its Agg canvas, never ``pyplot``: no
global backend switch, no figure registry to leak, safe in a server thread.
"""
from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

DPI = 100
METHOD_NAMES = {"gradcam": "Grad-CAM", "integrated_gradients": "integrated gradients"}


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")  # titles never overlap the axes
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.08)
    return buf.getvalue()


def to_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """uint8/float (C, H, W) -> (H, W) with a gray colormap or (H, W, 3) in [0, 1]."""
    img = np.asarray(image, dtype=np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 3 and img.shape[0] == 1:
        return img[0], "gray"
    if img.ndim == 3:
        return np.transpose(img[:3], (1, 2, 0)), None
    return img, "gray"


def curves_png(history: Sequence[dict[str, Any]], sentence: str = "") -> bytes:
    """Train/val loss and accuracy per epoch, side by side; the best val epoch marked."""
    epochs = [h["epoch"] for h in history]
    fig = _figure(10, 3.9)
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label=f"train {title}", color="#1f77b4")
        val = [h.get(f"val_{key}") for h in history]
        if any(v is not None for v in val):
            ax.plot(epochs, val, "s-", label=f"val {title}", color="#d62728")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    val_loss = [h.get("val_loss") for h in history]
    if val_loss and all(v is not None for v in val_loss):
        best = epochs[int(np.argmin(val_loss))]
        for ax in axes:
            ax.axvline(best, color="gray", ls="--", lw=1)
        axes[0].text(0.98, 0.98, f"dashed: best val loss (epoch {best})", transform=axes[0].transAxes, ha="right",
                     va="top", fontsize=8, color="gray")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    if sentence:
        fig.suptitle("\n".join(textwrap.wrap(sentence, 110)), fontsize=9)
    return _png(fig)


def confusion_png(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """Row-normalized confusion matrix (colour = share of the true class), counts written in."""
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    side = min(14, max(4.5, 0.55 * k + 1.5))
    fig = _figure(side, side * 0.9)
    ax = fig.subplots()
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    labels = [str(c)[:12] for c in classes]
    ax.set_xticks(range(k), labels, rotation=45 if k > 10 or max(map(len, labels)) > 3 else 0, ha="right" if k > 10 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7 if k > 10 else 8,
                            color="white" if rows[i, j] > 0.5 else "black")
    return _png(fig)


def reliability_png(rel: dict[str, list[float]], ece: float) -> bytes:
    """Reliability diagram: accuracy against confidence per bin, the diagonal is perfect calibration."""
    fig = _figure(4.2, 3.6)
    ax = fig.subplots()
    acc, count = (np.asarray(rel[k], dtype=float) for k in ("accuracy", "count"))
    bins = len(count)
    centers = (np.arange(bins) + 0.5) / bins
    mask = count > 0
    ax.bar(centers[mask], acc[mask], width=1 / bins, edgecolor="k", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"calibration (ECE {ece:.4f})")
    ax.legend(fontsize=8)
    return _png(fig)


def bars_png(labels: Sequence[str], series: dict[str, Sequence[float]], ylabel: str, title: str = "") -> bytes:
    """Grouped bars: one group per label, one bar per series (e.g. accuracy per variant per run)."""
    fig = _figure(max(5, 0.9 * len(labels) * max(1, len(series)) ** 0.5 + 2), 3.4)
    ax = fig.subplots()
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.set_ylim(max(0.0, min(min(v) for v in series.values()) - 0.1), 1.0)
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def image_grid_png(images: Sequence[np.ndarray | None], titles: Sequence[str] = (), cols: int = 8,
                   cmap: str | None = None, symmetric: bool = False, cell: float = 1.3, title: str = "") -> bytes:
    """A grid of (C, H, W) images or (H, W) maps with a caption under each."""
    n = max(1, len(images))
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = _figure(cols * cell, rows * (cell + 0.25) + (0.3 if title else 0))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= len(images):
            continue
        if images[i] is None:  # a placeholder keeps the grid's rows aligned
            continue
        img = np.asarray(images[i])
        if img.ndim == 2:
            lim = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap=cmap or "viridis", vmin=-lim if symmetric else None, vmax=lim if symmetric else None)
        else:
            shown, gray = to_display(img)
            ax.imshow(shown, cmap=gray, vmin=0, vmax=1)
        if i < len(titles):
            ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def filters_png(weights: np.ndarray, layer: str, max_filters: int = 64) -> bytes:
    """Conv kernels: RGB when the layer reads 3 channels, else the mean over input channels,
    on a symmetric red-blue scale (red excites, blue inhibits)."""
    w = np.asarray(weights)[:max_filters]
    if w.shape[1] == 3:
        lim = np.abs(w).max() or 1.0
        tiles = [(f / (2 * lim) + 0.5).clip(0, 1) for f in w]
        return image_grid_png(tiles, [str(i) for i in range(len(w))], cols=8, cell=0.9, title=f"{layer}: {len(w)} kernels")
    tiles = [f.mean(0) for f in w]
    mean = f" (mean over {w.shape[1]} input channels)" if w.shape[1] > 1 else ""
    return image_grid_png(tiles, [str(i) for i in range(len(w))], cols=8, cmap="RdBu_r", symmetric=True, cell=0.9,
                          title=f"{layer}: {len(w)} kernels {w.shape[2]}x{w.shape[3]}{mean}, red excites, blue inhibits")


def feature_maps_png(image: np.ndarray, maps: np.ndarray, layer: str, max_maps: int = 31) -> bytes:
    """The input, then the activation maps of one image (C, h, w), strongest mean activation first."""
    order = np.argsort(-maps.reshape(len(maps), -1).mean(1))[:max_maps]
    tiles = [image] + [maps[i] for i in order]
    titles = ["input"] + [f"ch {i}" for i in order]
    return image_grid_png(tiles, titles, cols=8, cmap="magma", title=f"{layer}: {len(order)} of {len(maps)} channels")


def attribution_png(images: Sequence[np.ndarray], maps: dict[str, np.ndarray], captions: Sequence[str], per_row: int = 8) -> bytes:
    """One column per image: the input (captioned) above each attribution map overlaid on it
    (jet, alpha 0.5; red = most important); blocks of ``per_row`` images stacked downwards."""
    n, rows_per = len(images), 1 + len(maps)
    blocks = math.ceil(n / per_row)
    cols = min(per_row, n)
    fig = _figure(1.7 * cols + 0.4, (1.75 * rows_per + 0.6) * blocks)
    axes = np.asarray(fig.subplots(rows_per * blocks, cols, squeeze=False))
    for ax in axes.ravel():
        ax.axis("off")
    for i, image in enumerate(images):
        block, col = divmod(i, per_row)
        shown, gray = to_display(image)
        top = axes[block * rows_per, col]
        top.imshow(shown, cmap=gray, vmin=0, vmax=1)
        top.set_title(captions[i] if i < len(captions) else "", fontsize=7)
        for r, (method, m) in enumerate(maps.items(), start=1):
            ax = axes[block * rows_per + r, col]
            ax.imshow(shown, cmap=gray, vmin=0, vmax=1)
            ax.imshow(m[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if col == 0:
                ax.text(-0.08, 0.5, METHOD_NAMES.get(method, method), rotation=90, transform=ax.transAxes,
                        ha="right", va="center", fontsize=8)
    return _png(fig)


def roc_pr_png(curves: Sequence[dict[str, Any]], classes: Sequence[str], max_classes: int = 12) -> bytes:
    """One-vs-rest ROC (left) and precision-recall (right) curves per class; ``curves`` holds
    per class ``fpr``/``tpr``/``precision``/``recall`` and the ``roc_auc``/``average_precision``
    of cnnkit.evaluation.ranking. Past ``max_classes`` only the lowest-AP classes are drawn."""
    fig = _figure(9.0, 4.0)
    roc, pr = fig.subplots(1, 2)
    order = sorted(range(len(curves)), key=lambda i: curves[i].get("average_precision") or 0.0)[:max_classes]
    for i in sorted(order):
        c = curves[i]
        auc, ap = c.get("roc_auc"), c.get("average_precision")
        roc.plot(c["fpr"], c["tpr"], lw=1.2, label=f"{classes[i]} ({auc:.3f})" if auc is not None else str(classes[i]))
        pr.step(c["recall"], c["precision"], where="post", lw=1.2,
                label=f"{classes[i]} ({ap:.3f})" if ap is not None else str(classes[i]))
    roc.plot([0, 1], [0, 1], "--", color="gray", lw=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC (AUC)", xlim=(0, 1), ylim=(0, 1.01))
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall (AP)", xlim=(0, 1), ylim=(0, 1.01))
    for ax in (roc, pr):
        ax.legend(fontsize=7, loc="lower right" if ax is roc else "lower left")
        ax.grid(alpha=0.3)
    return _png(fig)
