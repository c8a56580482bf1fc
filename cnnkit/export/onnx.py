"""Exporting a run to ONNX, checked against eager PyTorch before anyone uses it.

The exported graph takes the *normalized* float batch (N, C, H, W) with a dynamic batch axis and
returns logits, exactly like ``model(x)``; normalization stays outside (a few tensor ops) so the
same preprocessing code feeds both backends. An export is only returned once ONNX Runtime and
eager PyTorch agree on real test images of the run's own data: same argmax on every image and a
maximum absolute logit difference within ``atol``. A passed export is cached beside the weights
(``export/model.onnx`` + ``export/onnx.json``) and reused while the weights are unchanged
(cnnkit.export.report).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.io import write_atomic
from cnnkit.models.layers import fold_batchnorm
from cnnkit.runs import LoadedRun

# The exporter's native opset (converting its graph down to 17 fails on Reduce* axes inputs).
OPSET = 18
MIN_OPSET = 17
ATOL = 1e-4
CHECK_IMAGES = 256
ONNX_FILE, REPORT_FILE = "export/model.onnx", "export/onnx.json"


def _write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """torch.onnx.export with a dynamic batch axis ("batch"), input "input", output "logits"."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter narrates its passes as warnings
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, input_names=["input"],
                                    output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False,
                                    external_data=False)
    write_atomic(path, lambda p: program.save(str(p)))


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def check_images(loaded: LoadedRun, data_dir: str | None = None, n: int = CHECK_IMAGES) -> torch.Tensor:
    """Up to ``n`` uint8 test images (N, C, S, S) of the run's own data (else its validation split)."""
    from cnnkit.evaluation.evaluate import run_dataset

    try:
        ds = run_dataset(loaded, data_dir=data_dir)
    except CnnkitError as exc:
        raise CnnkitError(f"cannot load the test images of {loaded.ref} to check its export ({exc}); "
                          "pass the data root (--data-dir), or serve with --backend torch") from None
    split = ds.test if ds.test is not None and len(ds.test) else ds.val
    if split is None or not len(split):
        raise CnnkitError(f"{ds.name} has no test or validation images to check the export of {loaded.ref}")
    return split.images[:n]


def session(path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session; ``threads`` intra-op threads, no inter-op pool."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def compare(loaded: LoadedRun, onnx_path: Path, images: torch.Tensor, batch_size: int = 64) -> dict[str, Any]:
    """Run eager PyTorch and ONNX Runtime on the same normalized images: agreement figures."""
    from cnnkit.data.transforms import pipelines_for

    pipeline = pipelines_for(loaded.spec["preprocess"])[1]
    sess = session(onnx_path)
    model = loaded.model.to("cpu").eval()
    worst, agree = 0.0, 0
    for start in range(0, len(images), batch_size):
        x = pipeline(images[start:start + batch_size])
        with torch.inference_mode():
            eager = model(x).float().numpy()
        ort_out = sess.run(None, {"input": x.numpy()})[0]
        worst = max(worst, float(np.abs(eager - ort_out).max()))
        agree += int((eager.argmax(1) == ort_out.argmax(1)).sum())
    return {"images": int(len(images)), "max_abs_diff": worst, "argmax_agreement": agree / max(len(images), 1)}


def export_onnx(loaded: LoadedRun, path: str | Path, images: torch.Tensor, opset: int = OPSET,
                atol: float = ATOL) -> dict[str, Any]:
    """Write ``path`` and check it on ``images`` (uint8 test images); CnnkitError if they disagree."""
    if opset < MIN_OPSET:
        raise CnnkitError(f"ONNX opset must be {MIN_OPSET} or later, got {opset}")
    path = Path(path)
    pre = loaded.spec["preprocess"]
    example = torch.zeros(2, pre["channels"], pre["input_size"], pre["input_size"])
    try:
        # A Keras run exports its PyTorch twin (same layers, its weights); the check below runs
        # the Keras model itself, so the file is only kept if it computes what Keras computes.
        model = loaded.model.torch_twin() if hasattr(loaded.model, "torch_twin") else loaded.model
        # BNs folded into the convs (checked below against the unfolded model, like the export itself):
        # fewer ops for every runtime, and no BN left between a conv and the INT8 quantizer.
        _write_onnx(fold_batchnorm(model.to("cpu")), example, path, opset)
    except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways on unusual models
        raise CnnkitError(f"cannot export {loaded.ref} ({loaded.spec['name']}) to ONNX: {type(exc).__name__}: {exc}") from None
    report = {"run": loaded.ref, "opset": _opset(path), "atol": atol, **compare(loaded, path, images)}
    report["passed"] = report["argmax_agreement"] == 1.0 and report["max_abs_diff"] <= atol
    if not report["passed"]:
        raise CnnkitError(f"the ONNX export of {loaded.ref} disagrees with PyTorch on {report['images']} test images "
                          f"(max |diff| {report['max_abs_diff']:.2e}, argmax agreement {report['argmax_agreement']:.4f})")
    return report


def onnx_for_run(loaded: LoadedRun, data_dir: str | None = None) -> tuple[Path, dict[str, Any]]:
    """A checked ONNX file for ``loaded``: the cached one if its weights are unchanged, else a new one.

    The export goes into the run folder when it is writable (so a container with the run baked in
    reuses it), else into a temporary directory; its report is ``export/onnx.json``.
    """
    from cnnkit.export.report import checked_export

    return checked_export(loaded, "onnx", ONNX_FILE, lambda target: export_onnx(loaded, target, check_images(loaded, data_dir)))
