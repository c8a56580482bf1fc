"""INT8 ONNX: ONNX Runtime static quantization of the checked FP32 export, gated on test accuracy.

Static (activations calibrated ahead of time, not per batch), QDQ format (QuantizeLinear /
DequantizeLinear pairs ONNX Runtime fuses into integer kernels), per-channel int8 weights, uint8
activations (the u8 x s8 products AVX-512 VNNI does in one instruction); the convs that read
the 1-3 channel image stay in float (``image_convs``). The FP32 model first goes
through ``quant_pre_process`` (shape inference and graph optimization, as ONNX Runtime advises), and
calibration runs on ``CALIBRATION_IMAGES`` training images of the run's own data (a seeded sample,
so the same weights always give the same INT8 model). The result is accepted only if its accuracy
on the full test set is at most ``max_drop`` points below the FP32 export's.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.io import write_atomic
from cnnkit.runs import LoadedRun

INT8_FILE = "export/model.int8.onnx"
FORMAT = "onnx-int8"
CALIBRATION_IMAGES = 512
MAX_DROP = 0.5  # points of test accuracy an INT8 export may lose
THROUGHPUT_BATCH = 256


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol: one normalized batch per call, then None."""

    def __init__(self, batches: list[np.ndarray], input_name: str) -> None:
        self.batches, self.input_name = iter(batches), input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def _ort():
    try:
        import onnxruntime.quantization as q
    except ImportError:
        raise CnnkitError('INT8 export needs onnxruntime: pip install "cnnkit[serve]"') from None
    return q


def split_images(loaded: LoadedRun, data_dir: str | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All uint8 images and labels of one split of the run's own data."""
    from cnnkit.evaluation.evaluate import run_dataset

    subset = run_dataset(loaded, data_dir=data_dir).splits().get(split)
    if subset is None or not len(subset):
        raise CnnkitError(f"{loaded.ref}'s data has no {split} images (needed for the INT8 export)")
    return subset.images, subset.labels


def calibration_batches(loaded: LoadedRun, data_dir: str | None, n: int = CALIBRATION_IMAGES,
                        batch_size: int = 64) -> list[np.ndarray]:
    """``n`` training images (seeded sample), normalized as at inference, in batches."""
    from cnnkit.data.transforms import pipelines_for

    images, _ = split_images(loaded, data_dir, "train")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:n]
    pipeline = pipelines_for(loaded.spec["preprocess"])[1]
    return [pipeline(images[pick[i:i + batch_size]]).numpy() for i in range(0, len(pick), batch_size)]


def image_convs(model_path: Path, max_channels: int = 3) -> list[str]:
    """Conv nodes reading the image itself (1-3 channels). They stay in float: with K = 9 x C their
    int8 GEMM is too short for VNNI to pay (measured: the first conv of the MNIST cnn ran 2.6x
    slower in int8 than in FP32), and the raw image is where rounding costs most accuracy."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    inputs = {i.name: i for i in model.graph.input}
    out = []
    for node in model.graph.node:
        source = inputs.get(node.input[0]) if node.op_type == "Conv" and node.input else None
        dims = source.type.tensor_type.shape.dim if source is not None else []
        if len(dims) > 1 and dims[1].HasField("dim_value") and dims[1].dim_value <= max_channels:
            out.append(node.name)
    return out


def rescaled_convs(model_path: Path) -> list[str]:
    """Convs whose output reaches a BatchNormalization left in the graph (the export folds those it
    can, ``models.layers.fold_batchnorm``; e.g. one behind a max pool with a negative scale is left),
    and those BatchNormalizations. Such a BN rescales each channel by its own small spread, while ONNX
    Runtime quantizes the conv's output per tensor: one uint8 step then spans more than a channel's
    whole signal (measured on the MNIST airbench run before its BNs were folded: 99.6% fell to 12%
    with its first block's conv in int8). Both stay in float; the convs after them are quantized."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    keep: list[str] = []
    for node in graph.node:
        if node.op_type != "BatchNormalization":
            continue
        keep.append(node.name)
        source = producer.get(node.input[0])
        while source is not None and source.op_type in ("MaxPool", "AveragePool"):
            source = producer.get(source.input[0])
        if source is not None and source.op_type == "Conv":
            keep.append(source.name)
    return keep


def quantize(fp32: Path, out: Path, batches: list[np.ndarray]) -> list[str]:
    """quant_pre_process + quantize_static (QDQ, per-channel s8 weights, u8 activations) into ``out``;
    returns the nodes left in float (``image_convs``, ``rescaled_convs``)."""
    q = _ort()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="cnnkit-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - its symbolic pass (for dynamic-shape models) fails on some graphs
            # (e.g. the Reshape before airbench's head); ONNX's own shape inference suffices for a CNN.
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        keep_float = list(dict.fromkeys(image_convs(pre) + rescaled_convs(pre)))
        write_atomic(out, lambda p: q.quantize_static(
            str(pre), str(p), _Calibration(batches, "input"), quant_format=q.QuantFormat.QDQ, per_channel=True,
            activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8, nodes_to_exclude=keep_float,
            calibrate_method=q.CalibrationMethod.MinMax, extra_options={"ActivationSymmetric": False}))
    return keep_float


def accuracy(session: Any, images: torch.Tensor, labels: torch.Tensor, pipeline: Any, batch_size: int = 500) -> float:
    right = 0
    for start in range(0, len(images), batch_size):
        logits = session.run(None, {"input": pipeline(images[start:start + batch_size]).numpy()})[0]
        right += int((logits.argmax(1) == labels[start:start + batch_size].numpy()).sum())
    return right / max(len(images), 1)


def throughput(session: Any, x: np.ndarray, seconds: float = 1.0) -> float:
    """Images per second on batch ``x`` (median of repeated runs after a warm-up)."""
    session.run(None, {"input": x})
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(rates) < 3:
        t = time.perf_counter()
        session.run(None, {"input": x})
        rates.append(len(x) / (time.perf_counter() - t))
    return float(np.median(rates))


def measure(loaded: LoadedRun, fp32: Path, int8: Path, data_dir: str | None, threads: int) -> dict[str, Any]:
    """FP32 vs INT8 ONNX on the full test set: accuracy, file size, batch throughput."""
    from cnnkit.data.transforms import pipelines_for
    from cnnkit.export.onnx import session

    images, labels = split_images(loaded, data_dir, "test")
    pipeline = pipelines_for(loaded.spec["preprocess"])[1]
    x = pipeline(images[:THROUGHPUT_BATCH]).numpy()
    out: dict[str, Any] = {"test_images": len(images), "threads": threads, "throughput_batch": len(x)}
    for name, path in (("fp32", fp32), ("int8", int8)):
        sess = session(path, threads)
        out[name] = {"accuracy": accuracy(sess, images, labels, pipeline), "bytes": path.stat().st_size,
                     "images_per_s": throughput(sess, x)}
    out["accuracy_drop_points"] = 100 * (out["fp32"]["accuracy"] - out["int8"]["accuracy"])
    out["speedup"] = out["int8"]["images_per_s"] / out["fp32"]["images_per_s"]
    return out


def gate(ref: str, figures: dict[str, Any], max_drop: float, force: bool) -> None:
    """CnnkitError with the figures when INT8 loses more than ``max_drop`` points (unless ``force``)."""
    drop = figures["accuracy_drop_points"]
    if drop > max_drop and not force:
        raise CnnkitError(f"the INT8 export of {ref} loses {drop:.2f} points of test accuracy "
                          f"(FP32 {figures['fp32']['accuracy']:.4f}, INT8 {figures['int8']['accuracy']:.4f}), "
                          f"more than --max-drop {max_drop}; pass --force to keep it")


def int8_for_run(loaded: LoadedRun, data_dir: str | None = None, max_drop: float = MAX_DROP, force: bool = False,
                 threads: int | None = None) -> tuple[Path, dict[str, Any]]:
    """A quantized ``export/model.int8.onnx`` (report ``export/onnx-int8.json``), reused while the
    weights are unchanged; refused (CnnkitError) beyond ``max_drop`` points unless ``force``."""
    from cnnkit.export.onnx import onnx_for_run
    from cnnkit.export.report import checked_export

    if max_drop < 0:
        raise CnnkitError(f"--max-drop must be >= 0 points, got {max_drop}")
    fp32, fp32_report = onnx_for_run(loaded, data_dir)
    n_threads = threads or torch.get_num_threads()

    def build(target: Path) -> dict[str, Any]:
        batches = calibration_batches(loaded, data_dir)
        try:
            float_nodes = quantize(fp32, target, batches)
        except Exception as exc:  # noqa: BLE001 - the quantizer fails in many ways on unusual graphs
            raise CnnkitError(f"cannot quantize the ONNX export of {loaded.ref}: {type(exc).__name__}: {exc}") from None
        figures = measure(loaded, fp32, target, data_dir, n_threads)
        gate(loaded.ref, figures, max_drop, force)
        return {"opset": fp32_report["opset"], "quantization": {
                    "method": "static", "format": "QDQ", "per_channel": True, "weights": "int8", "activations": "uint8",
                    "calibration": "minmax", "calibration_images": sum(len(b) for b in batches), "pre_process": True,
                    "float_nodes": float_nodes},
                "fp32_sha256": fp32_report["sha256"], "max_drop": max_drop, "forced": bool(force), **figures}

    path, report = checked_export(loaded, FORMAT, INT8_FILE, build)
    if report.get("cached") and report.get("fp32_sha256") != fp32_report["sha256"]:
        loaded.run.file(INT8_FILE).unlink(missing_ok=True)  # quantized from an older FP32 export
        return int8_for_run(loaded, data_dir, max_drop, force, threads)
    if report.get("cached"):
        gate(loaded.ref, report, max_drop, force)  # the stored figures, against this call's limit
    return path, report
