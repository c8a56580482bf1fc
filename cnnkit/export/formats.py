"""``export_run``: one entry point for every way a run leaves cnnkit, and what each format is for.

Every export is checked before it is kept, described by ``export/<format>.json`` in the run folder
(cnnkit.export.report) and reused while the weights are unchanged; ``out`` copies the artifact.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.export.names import FORMATS, QUANTIZE
from cnnkit.runs import LoadedRun, load


def _artifact(loaded: LoadedRun, fmt: str, quantize: str | None, data_dir: str | None, max_drop: float, force: bool,
              include_onnx: bool) -> tuple[Path, dict[str, Any]]:
    if fmt == "onnx" and quantize == "int8":
        from cnnkit.export.quantize import int8_for_run

        return int8_for_run(loaded, data_dir, max_drop, force)
    if fmt == "onnx":
        from cnnkit.export.onnx import onnx_for_run

        return onnx_for_run(loaded, data_dir)
    if fmt == "pt2":
        from cnnkit.export.pt2 import pt2_for_run

        return pt2_for_run(loaded, data_dir)
    from cnnkit.export.hf import hf_for_run

    return hf_for_run(loaded, data_dir, include_onnx)


def _copy_out(path: Path, fmt: str, out: str | Path) -> Path:
    """``out`` is a directory: the file goes inside it; for hf, ``out`` becomes the Hub folder."""
    if fmt == "hf":
        from cnnkit.export.hf import copy_folder

        return copy_folder(path, out)
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise CnnkitError(f"--out {out_dir} is a file; give a directory")
    from cnnkit.io import write_atomic

    dest = out_dir / path.name
    write_atomic(dest, lambda p: shutil.copyfile(path, p))
    return dest


def export_run(run: LoadedRun | str, format: str, quantize: str | None = None, out: str | Path | None = None, *,
               runs_dir: str | None = None, data_dir: str | None = None, max_drop: float | None = None,
               force: bool = False, include_onnx: bool = False) -> dict[str, Any]:
    """Export ``run`` (a LoadedRun or a reference) as ``format`` (onnx, pt2, hf); return its report.

    ``quantize="int8"`` (onnx only) quantizes statically with ONNX Runtime and refuses a model losing
    more than ``max_drop`` test-accuracy points (default 0.5) unless ``force``. The report is the
    stored ``export/<format>.json`` plus ``path`` (the artifact), ``cached`` (reused) and, with
    ``out``, ``out`` (the copy). Bad input raises CnnkitError and writes nothing.
    """
    if format not in FORMATS:
        raise CnnkitError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if quantize is not None and (quantize not in QUANTIZE or format != "onnx"):
        raise CnnkitError(f"--quantize {quantize} is not available for --format {format} (only int8, with onnx)")
    if (max_drop is not None or force) and quantize is None:
        raise CnnkitError("--max-drop and --force apply to --quantize int8 only")
    if include_onnx and format != "hf":
        raise CnnkitError("--include-onnx applies to --format hf only")
    loaded = run if isinstance(run, LoadedRun) else load(run, runs_dir)
    if loaded.spec.get("framework") == "keras" and format != "onnx":
        raise CnnkitError(f"--format {format} is not available for the Keras run {loaded.ref}: "
                          "Keras runs export to ONNX (--format onnx)")
    from cnnkit.export.quantize import MAX_DROP

    path, report = _artifact(loaded, format, quantize, data_dir, MAX_DROP if max_drop is None else max_drop, force,
                             include_onnx)
    report = {**report, "path": str(path)}
    if out is not None:
        report["out"] = str(_copy_out(path, format, out))
    return report


def serving_export(loaded: LoadedRun, backend: str, data_dir: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The checked file ``cnnkit serve --backend onnx|onnx-int8`` runs: the FP32 export (logit parity
    with PyTorch) or the INT8 one (test accuracy within the default --max-drop of FP32)."""
    if backend == "onnx-int8":
        from cnnkit.export.quantize import int8_for_run

        return int8_for_run(loaded, data_dir)
    from cnnkit.export.onnx import onnx_for_run

    return onnx_for_run(loaded, data_dir)


def describe_check(report: dict[str, Any]) -> str:
    """One line on how an export was checked (for the server's log)."""
    state = "reused checked export" if report.get("cached") else "exported and checked"
    if report.get("format") == "onnx-int8":
        return (f"INT8 ONNX opset {report['opset']}: {state}; test accuracy FP32 {report['fp32']['accuracy']:.4f}, "
                f"INT8 {report['int8']['accuracy']:.4f} ({report['accuracy_drop_points']:.2f} points lost, "
                f"limit {report['max_drop']})")
    return (f"ONNX opset {report['opset']}: {state} on {report['images']} test images "
            f"(max |diff| {report['max_abs_diff']:.1e}, argmax agreement {report['argmax_agreement']:.0%})")
