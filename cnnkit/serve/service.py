"""decode -> predict -> encode for /predict and /explain, apart from the HTTP routes.

Images are decoded and preprocessed in a worker thread (a 12-megapixel JPEG takes tens of
milliseconds and must not stall the event loop), except tiny ones, for which the hop to a
thread costs more than the work. Forward passes go through the model's Batcher.
"""
from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import numpy as np

from cnnkit.data.imageio import ImageTooLarge
from cnnkit.errors import CnnkitError
from cnnkit.serve import protocol_v2 as v2
from cnnkit.serve.batching import BatcherClosed, QueueFull
from cnnkit.serve.limits import ApiError, decompress
from cnnkit.serve.repository import ServedModel
from cnnkit.serve.settings import Limits, Preprocess

# Below this many bytes in total, decoding inline beats a thread hop (a 28x28 PNG is ~300 bytes).
INLINE_BYTES = 16 * 1024
# Grad-CAM needs gradients: one at a time per process, so it cannot starve the predictions.
_EXPLAIN_LOCK = threading.Lock()
T = TypeVar("T")


async def timed(work: Awaitable[T], seconds: float) -> T:
    """``work``'s result, or the 504/503 that says why there is none (timeout, queue full, unloaded).

    ``asyncio.timeout`` rather than ``wait_for``: no extra task per request on the hot path."""
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError:
        raise ApiError(504, "timeout", f"no answer within the {seconds:g} s request timeout") from None
    except QueueFull as exc:
        raise ApiError(503, "overloaded", f"server busy: {exc}", {"Retry-After": "1"}) from None
    except BatcherClosed as exc:
        raise ApiError(503, "unloaded", f"{exc}; retry", {"Retry-After": "1"}) from None


def _digits(mode: Preprocess) -> bool | None:
    return {"auto": None, "digits": True, "plain": False}[mode]


def prepare(model: ServedModel, blobs: Sequence[bytes], mode: Preprocess, limits: Limits) -> list[Any]:
    """Encoded images -> ``Prepared`` (uint8 (C, S, S) + steps); a bad image -> 4xx naming it."""
    out = []
    for i, blob in enumerate(blobs):
        try:
            out.append(model.predictor.prepare(blob, _digits(mode), max_pixels=limits.max_pixels))
        except CnnkitError as exc:
            reason = getattr(exc, "reason", str(exc))
            status = 413 if isinstance(exc, ImageTooLarge) else 422  # the decoder says which, not the wording
            raise ApiError(status, "bad_image", f"image {i}: {reason}") from None
    return out


async def prepare_async(model: ServedModel, blobs: Sequence[bytes], mode: Preprocess, limits: Limits) -> list[Any]:
    if sum(len(b) for b in blobs) <= INLINE_BYTES:
        return prepare(model, blobs, mode, limits)
    return await asyncio.to_thread(prepare, model, blobs, mode, limits)


def top_k(probs: np.ndarray, classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    k = max(1, min(k, len(probs)))
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"index": int(i), "label": classes[int(i)], "probability": round(float(probs[i]), 6)} for i in order]


def png_data_url(array: np.ndarray) -> str:
    """uint8 (C, S, S) or (S, S, 3) -> 'data:image/png;base64,...' (what the page shows)."""
    from PIL import Image

    img = array[0] if array.ndim == 3 and array.shape[0] == 1 else array
    img = img.transpose(1, 2, 0) if img.ndim == 3 and img.shape[0] == 3 else img
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


async def predict(model: ServedModel, read: Awaitable[list[bytes]], k: int, mode: Preprocess, limits: Limits,
                  include_input: bool = False) -> dict[str, Any]:
    """``read`` yields the request's encoded images; the batcher knows this request is coming
    while they are read and decoded, so it can wait for it to fill the next batch."""
    with model.incoming():
        blobs = await read
        prepared = await prepare_async(model, blobs, mode, limits)
    probs = await model.probabilities([p.array for p in prepared])
    _observe(model, [p.array for p in prepared], probs, "predict", blobs, [p.steps for p in prepared])
    results = []
    for p, row in zip(prepared, probs):
        result: dict[str, Any] = {"predictions": top_k(row, model.classes, k), "preprocessing": p.steps,
                                  "decision": model.predictor.decide(row)}  # which rule answered (argmax or saved)
        if include_input:
            result["input"] = png_data_url(p.array)
        results.append(result)
    return {"model": model.name, "version": model.version, "results": results}


def _observe(model: ServedModel, arrays: list[np.ndarray], probs: Sequence[np.ndarray], route: str,
             blobs: Sequence[bytes] | None = None, steps: Sequence[Sequence[str]] | None = None) -> None:
    """Prediction log + drift window (cnnkit.serve.monitoring), when the server has them on."""
    if model.observer is not None:  # (KServe v2 FP32 tensors are 0..1: the statistics read uint8)
        arrays = [a if a.dtype == np.uint8 else np.clip(np.rint(a * 255), 0, 255).astype(np.uint8) for a in arrays]
        model.observer.record(model, arrays, probs, route, blobs, steps)


def _colormap(heat: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB uint8 along dark blue, cyan, yellow, red (a perceptually ordered ramp)."""
    stops = np.array([[0, 0, 0.35], [0, 0.7, 1.0], [1.0, 0.9, 0.0], [0.9, 0.05, 0.0]], dtype=np.float32)
    pos = np.clip(heat, 0, 1) * (len(stops) - 1)
    lo = np.minimum(pos.astype(int), len(stops) - 2)
    frac = (pos - lo)[..., None]
    return (255 * (stops[lo] * (1 - frac) + stops[lo + 1] * frac)).astype(np.uint8)


def overlay(array: np.ndarray, heat: np.ndarray, size: int = 224) -> np.ndarray:
    """The model's input (gray or RGB), enlarged, with the heat map blended on top: (size, size, 3)."""
    from PIL import Image

    base = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    base_img = Image.fromarray(np.ascontiguousarray(base)).convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    heat_img = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
    h = np.asarray(heat_img, dtype=np.float32) / 255.0
    alpha = (0.25 + 0.5 * h)[..., None]
    mixed = np.asarray(base_img, dtype=np.float32) * (1 - alpha) + _colormap(h).astype(np.float32) * alpha
    return np.clip(mixed, 0, 255).astype(np.uint8)


def _gradcam(model: ServedModel, arrays: list[np.ndarray], target: int | None) -> dict[str, Any]:
    from cnnkit.explain.attribution import explain_batch
    from cnnkit.serve.backends import ModelInputs

    x = ModelInputs(model.pre)(np.stack(arrays))
    with _EXPLAIN_LOCK:
        return explain_batch(model.predictor.model, x, target, methods=("gradcam",))


def _heat_list(heat: np.ndarray, max_side: int = 64) -> list[list[float]]:
    """The map as nested lists, at most ``max_side`` on a side (a 224x224 map is 50,000 numbers)."""
    if max(heat.shape) > max_side:
        from PIL import Image

        heat = np.asarray(Image.fromarray(heat.astype(np.float32)).resize((max_side, max_side), Image.Resampling.BILINEAR))
    return np.round(heat, 3).tolist()


async def explain(model: ServedModel, read: Awaitable[list[bytes]], k: int, target: int | None, mode: Preprocess,
                  limits: Limits) -> dict[str, Any]:
    blobs = await read
    if target is not None and not 0 <= target < len(model.classes):
        raise ApiError(422, "bad_target", f"target must be a class index 0-{len(model.classes) - 1}, got {target}")
    prepared = await prepare_async(model, blobs, mode, limits)
    arrays = [p.array for p in prepared]
    out = await asyncio.to_thread(_gradcam, model, arrays, target)
    _observe(model, arrays, list(out["probabilities"]), "explain", blobs, [p.steps for p in prepared])
    results = []
    for i, p in enumerate(prepared):
        heat = out["gradcam"][i]
        results.append({
            "predictions": top_k(out["probabilities"][i], model.classes, k), "preprocessing": p.steps,
            "target": int(out["targets"][i]), "layer": out["layer"], "input": png_data_url(p.array),
            "heatmap": _heat_list(heat), "overlay": png_data_url(overlay(p.array, heat)),
        })
    return {"model": model.name, "version": model.version, "method": "gradcam", "results": results}


async def infer_v2(model: ServedModel, body: bytes, headers: Any, limits: Limits) -> tuple[bytes, dict[str, str]]:
    """A KServe v2 infer request (JSON or binary extension, maybe gzipped) -> (body, headers)."""
    body = decompress(body, headers.get("content-encoding"), limits.max_request_bytes)
    raw_length = headers.get("inference-header-content-length")
    if raw_length is not None and not raw_length.isdigit():
        raise v2.ProtocolError("Inference-Header-Content-Length must be a number")
    req = v2.parse_infer_request(body, int(raw_length) if raw_length is not None else None)
    if len(req.inputs) != 1:
        raise v2.ProtocolError(f"expected one input tensor, got {len(req.inputs)}")
    items: list[Any] = v2.images_from_tensor(req.inputs[0], model.pre["channels"], model.pre["stored_size"])
    if not items:
        raise v2.ProtocolError("the input tensor holds no images")
    if len(items) > limits.max_images:
        raise ApiError(422, "too_many_images", f"{len(items)} images in one request; the limit is {limits.max_images}")
    if isinstance(items[0], bytes):  # encoded images: decoded and preprocessed as for /predict
        with model.incoming():
            items = [p.array for p in await prepare_async(model, items, "auto", limits)]
    probs = np.stack(await model.probabilities(items))
    _observe(model, items, list(probs), "v2")
    labels = [model.classes[int(row.argmax())] for row in probs]
    return v2.encode_infer_response(model.name, model.version, req, probs, labels)
