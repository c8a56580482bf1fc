"""Export reports: ``export/<format>.json`` beside the artifact, and reuse while the weights are unchanged.

Every export (onnx, onnx-int8, pt2, hf) is written to a temporary file and renamed, then described
by a report holding the sha256 of the weights it came from and of each artifact it wrote. A later
export of the same format reuses the artifact when both checksums still match, so checking (and
quantizing) happens once per set of weights.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnkit.io import file_digest
from cnnkit.runs import LoadedRun

EXPORT_DIR = "export"


def report_rel(fmt: str) -> str:
    return f"{EXPORT_DIR}/{fmt}.json"


def weights_sha256(loaded: LoadedRun) -> str:
    return file_digest(loaded.run.weights_file, "sha256")  # model.keras for a Keras run


def versions() -> dict[str, str]:
    """The library versions an export depends on (recorded in every report)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("cnnkit", "torch", "onnx", "onnxruntime"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def cached(loaded: LoadedRun, fmt: str, artifact: Path) -> dict[str, Any] | None:
    """The stored report of ``fmt`` if it passed and neither the weights nor the artifact changed."""
    report = loaded.run.read(report_rel(fmt)) or {}
    if not (artifact.is_file() and report.get("passed") and report.get("weights_sha256") == weights_sha256(loaded)):
        return None
    if report.get("sha256", report.get("onnx_sha256")) != file_digest(artifact, "sha256"):
        return None
    return {**report, "cached": True}


def writable_target(loaded: LoadedRun, rel: str) -> Path:
    """``rel`` inside the run folder when it is writable (so the export is reused), else a temp dir."""
    target = loaded.run.file(rel)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=target.parent).close()
    except OSError:
        target = Path(tempfile.mkdtemp(prefix="cnnkit-export-")) / target.name
    return target


def checked_export(loaded: LoadedRun, fmt: str, rel: str, build: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """The artifact ``rel`` of format ``fmt``: reused if unchanged, else ``build(target)`` writes and
    checks it (raising CnnkitError if the check fails) and returns its figures; the report is stored."""
    target = loaded.run.file(rel)
    hit = cached(loaded, fmt, target)
    if hit is not None:
        return target, hit
    target = writable_target(loaded, rel)
    weights = weights_sha256(loaded)
    try:
        figures = build(target)
    except BaseException:
        target.unlink(missing_ok=True)  # a failed check leaves no artifact behind
        raise
    report = {"format": fmt, "run": loaded.ref, "file": target.name, **figures, "passed": True,
              "weights_sha256": weights, "sha256": file_digest(target, "sha256"), "bytes": target.stat().st_size,
              "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if target == loaded.run.file(rel):
        loaded.run.write(report_rel(fmt), report)
    return target, {**report, "cached": False}
