"""Exporting a run with ``torch.export``: an ExportedProgram (``.pt2``) with a dynamic batch axis.

Loadable with no cnnkit code: ``torch.export.load("model.pt2").module()(x)`` on a normalized float
batch (N, C, H, W) returns logits, like the ONNX export. Checked against eager PyTorch on real test
images before it is kept (same argmax on every image, max |logit diff| <= ``ATOL``).
(TorchScript is deprecated in current PyTorch; this is its successor.)
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.runs import LoadedRun

PT2_FILE = "export/model.pt2"
ATOL = 1e-4
MAX_BATCH = 4096


def _export(model: torch.nn.Module, example: torch.Tensor) -> Any:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def _save(program: Any, path: Path) -> None:
    """torch.export.save to a temp file and rename (atomic); the temp name ends in .pt2, as torch wants."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".pt2")
    os.close(fd)
    try:
        torch.export.save(program, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def compare_pt2(loaded: LoadedRun, path: Path, images: torch.Tensor, batch_size: int = 64) -> dict[str, Any]:
    """Reload ``path`` as a plain torch.export program and compare it with eager PyTorch."""
    from cnnkit.data.transforms import pipelines_for

    pipeline = pipelines_for(loaded.spec["preprocess"])[1]
    program = torch.export.load(str(path)).module()
    model = loaded.model.to("cpu").eval()
    worst, agree = 0.0, 0
    for start in range(0, len(images), batch_size):
        x = pipeline(images[start:start + batch_size])
        with torch.inference_mode():
            eager, exported = model(x).float().numpy(), program(x).float().numpy()
        worst = max(worst, float(np.abs(eager - exported).max()))
        agree += int((eager.argmax(1) == exported.argmax(1)).sum())
    return {"images": int(len(images)), "max_abs_diff": worst, "argmax_agreement": agree / max(len(images), 1)}


def export_pt2(loaded: LoadedRun, path: str | Path, images: torch.Tensor, atol: float = ATOL) -> dict[str, Any]:
    """Write ``path`` (torch.export.save) and check it on ``images``; CnnkitError if it disagrees."""
    path = Path(path)
    pre = loaded.spec["preprocess"]
    example = torch.zeros(2, pre["channels"], pre["input_size"], pre["input_size"])
    try:
        program = _export(loaded.model.to("cpu").eval(), example)
    except Exception as exc:  # noqa: BLE001 - torch.export rejects many dynamic constructs
        raise CnnkitError(f"cannot torch.export {loaded.ref} ({loaded.spec['name']}): {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    _save(program, path)
    report = {"torch": torch.__version__, "atol": atol, "dynamic_batch": [1, MAX_BATCH], **compare_pt2(loaded, path, images)}
    if report["argmax_agreement"] != 1.0 or report["max_abs_diff"] > atol:
        raise CnnkitError(f"the pt2 export of {loaded.ref} disagrees with PyTorch on {report['images']} test images "
                          f"(max |diff| {report['max_abs_diff']:.2e}, argmax agreement {report['argmax_agreement']:.4f})")
    return report


def pt2_for_run(loaded: LoadedRun, data_dir: str | None = None) -> tuple[Path, dict[str, Any]]:
    """A checked ``export/model.pt2`` for ``loaded`` (reused while the weights are unchanged)."""
    from cnnkit.export.onnx import check_images
    from cnnkit.export.report import checked_export

    return checked_export(loaded, "pt2", PT2_FILE, lambda target: export_pt2(loaded, target, check_images(loaded, data_dir)))
