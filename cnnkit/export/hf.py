"""A run as a Hugging Face Hub folder: weights, a timm-style config, a model card, figures.

``write_hub_folder(run, out_dir)`` writes::

    model.safetensors   the run's weights (its header also carries model.json)
    config.json         timm's field names where the meaning is the same (architecture, num_classes,
                        label_names, model_args, pretrained_cfg.input_size/mean/std) + a cnnkit section
    README.md           the model card: YAML header (library_name, pipeline_tag, tags, license,
                        datasets, model-index with the test results of ``cnnkit eval``) + body
    curves.png, confusion.png
    model.onnx          optional: the checked ONNX export
    .gitattributes      binaries in Git LFS

``cnnkit.load(FOLDER)`` reads it back (cnnkit.hubfolder). The folder is built in a temporary
sibling and renamed into place, so a failure never leaves half a folder.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.hubfolder import CARD_FILE, CONFIG_FILE, FORMAT, LIBRARY, WEIGHTS_FILE, is_hub_folder
from cnnkit.io import file_digest, write_json, write_text
from cnnkit.runs import LoadedRun, load

LFS_PATTERNS = ("*.safetensors", "*.onnx", "*.pt2", "*.png", "*.bin", "*.pt")
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS)
# Options that only meant something on the machine that trained the run.
_LOCAL_OPTIONS = {"data": ("data_dir",), "run": ("runs_dir",)}


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The training config without machine-local paths (data root, runs root)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for section, keys in _LOCAL_OPTIONS.items():
        for key in keys:
            if isinstance(out.get(section), dict):
                out[section].pop(key, None)
    return out


def hub_config(loaded: LoadedRun) -> dict[str, Any]:
    """config.json for ``loaded`` (cnnkit.hubfolder.spec_from_config is its inverse)."""
    spec, run = loaded.spec, loaded.run
    pre = spec["preprocess"]
    data = {k: v for k, v in (run.read("data.json") or {}).items() if k != "source"}  # source: a local path
    return {
        "library_name": LIBRARY,
        "architecture": spec["name"],
        "num_classes": spec["num_classes"],
        "label_names": list(spec["classes"]),
        "model_args": dict(spec.get("kwargs") or {}),
        "pretrained_cfg": {"input_size": [pre["channels"], pre["input_size"], pre["input_size"]],
                           "mean": list(pre["mean"]), "std": list(pre["std"]), "interpolation": "bilinear",
                           "crop_pct": 1.0, "crop_mode": "center", "num_classes": spec["num_classes"]},
        "cnnkit": {
            "format": FORMAT, "run": loaded.ref, "version": run.version,
            "preprocess": {"kind": pre["kind"], "stored_size": pre["stored_size"], "resize": pre["resize"]},
            "config": portable_config(loaded.config), "data": data, "metrics": run.read("metrics.json") or {},
            "history": run.read("history.json") or [],
            "weights_sha256": file_digest(run.file(WEIGHTS_FILE), "sha256"),
        },
    }


def test_summary(loaded: LoadedRun, data_dir: str | None = None) -> dict[str, Any]:
    """What ``cnnkit eval RUN --json`` prints for the run (same defaults; its stored result reused)."""
    from cnnkit.evaluation.evaluate import evaluate_loaded, run_dataset

    ds = run_dataset(loaded, data_dir=data_dir)
    if ds.test is None or not len(ds.test):
        raise CnnkitError(f"{loaded.ref} has no test split: a model card needs test-set results")
    return evaluate_loaded(loaded, ds, "test").summary


def _figures(loaded: LoadedRun, summary: dict[str, Any], folder: Path) -> dict[str, str]:
    """curves.png (the run's own, else drawn from its history) and confusion.png; file -> alt text."""
    from cnnkit import plots

    written: dict[str, str] = {}
    curves = loaded.run.file("curves.png")
    if curves.is_file():
        shutil.copyfile(curves, folder / "curves.png")
        written["curves.png"] = "training curves"
    elif history := loaded.run.read("history.json"):
        (folder / "curves.png").write_bytes(plots.curves_png(history))
        written["curves.png"] = "training curves"
    (folder / "confusion.png").write_bytes(plots.confusion_png(summary["results"]["clean"]["confusion"], loaded.classes))
    written["confusion.png"] = "confusion matrix on the test set"
    return written


def _check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_hub_folder(out))):
        raise CnnkitError(f"{out} exists and is not a cnnkit Hub folder; choose an empty or new --out")


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A temporary sibling of ``out`` to fill; renamed onto ``out`` (an old Hub folder there is replaced
    whole) only when the block finishes, and removed when it fails."""
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield tmp
        tmp.chmod(0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            out.rename(old / out.name)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_hub_folder(run: LoadedRun | str, out_dir: str | Path, include_onnx: bool = False, *,
                     runs_dir: str | None = None, data_dir: str | None = None, license: str = "apache-2.0",
                     model_name: str | None = None, repo_id: str | None = None) -> Path:
    """Write the Hub folder of ``run`` (a LoadedRun or a run reference) to ``out_dir``; return its path.

    Evaluates the run on its test set (reusing ``cnnkit eval``'s stored result) for the card;
    ``include_onnx`` adds the checked ONNX export (``cnnkit.export.onnx.onnx_for_run``);
    ``repo_id`` (OWNER/REPO) goes into the card's usage lines. Raises
    CnnkitError (nothing written) when ``out_dir`` holds something else, or the run has no weights or
    no test split.
    """
    from cnnkit.export.card import render_card

    loaded = run if isinstance(run, LoadedRun) else load(run, runs_dir)
    out = Path(out_dir)
    _check_target(out)
    if not loaded.run.file(WEIGHTS_FILE).is_file():
        raise CnnkitError(f"run {loaded.ref} has no weights; it did not finish")
    summary = test_summary(loaded, data_dir)
    with _staged(out) as tmp:
        shutil.copyfile(loaded.run.file(WEIGHTS_FILE), tmp / WEIGHTS_FILE)
        cfg = hub_config(loaded)
        write_json(tmp / CONFIG_FILE, cfg)
        images = _figures(loaded, summary, tmp)
        name = model_name or loaded.run.name
        write_text(tmp / CARD_FILE, render_card(summary, loaded.spec, cfg["cnnkit"]["config"], cfg["cnnkit"]["data"],
                                                name, images, license, repo_id))
        if include_onnx:
            from cnnkit.export.onnx import onnx_for_run

            shutil.copyfile(onnx_for_run(loaded, data_dir)[0], tmp / "model.onnx")
        write_text(tmp / ".gitattributes", GITATTRIBUTES)
        for p in tmp.iterdir():
            p.chmod(0o644)
    return out


def folder_files(folder: str | Path) -> dict[str, str]:
    """sha256 of every file of a Hub folder (relative path -> hex), for reports and push checks."""
    root = Path(folder)
    return {str(p.relative_to(root)): file_digest(p, "sha256") for p in sorted(root.rglob("*")) if p.is_file()}


HF_DIR, HF_FORMAT = "export/hf", "hf"


def hf_for_run(loaded: LoadedRun, data_dir: str | None = None, include_onnx: bool = False) -> tuple[Path, dict[str, Any]]:
    """The Hub folder ``export/hf/`` of ``loaded`` and its report ``export/hf.json``; reused while the
    weights and every file of the folder are unchanged (and ``include_onnx`` is the same)."""
    from cnnkit.export.report import report_rel, versions, weights_sha256, writable_target

    folder, weights = loaded.run.file(HF_DIR), weights_sha256(loaded)
    stored = loaded.run.read(report_rel(HF_FORMAT)) or {}
    if folder.is_dir() and stored.get("weights_sha256") == weights and stored.get("include_onnx") == include_onnx \
            and stored.get("files") == folder_files(folder):
        return folder, {**stored, "cached": True}
    target = writable_target(loaded, HF_DIR)
    write_hub_folder(loaded, target, include_onnx, data_dir=data_dir)
    card = _hub_card(target)
    report = {"format": HF_FORMAT, "run": loaded.ref, "file": target.name, "passed": True, "weights_sha256": weights,
              "include_onnx": include_onnx, "files": folder_files(target),
              "bytes": sum(p.stat().st_size for p in target.iterdir() if p.is_file()),
              "eval_results": card, "versions": versions()}
    if target == folder:
        loaded.run.write(report_rel(HF_FORMAT), report)
    return target, {**report, "cached": False}


def _hub_card(folder: Path) -> list[dict[str, Any]]:
    """The card's results as the Hub reads them (huggingface_hub.ModelCard)."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / CARD_FILE)
    return [{"metric": r.metric_type, "value": r.metric_value, "dataset": r.dataset_type, "split": r.dataset_split}
            for r in card.data.eval_results or []]


def copy_folder(src: Path, out: str | Path) -> Path:
    """Copy a Hub folder onto ``out`` (built beside it and renamed; an old Hub folder there is replaced)."""
    out = Path(out)
    with _staged(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return out
