"""What every deploy bundle shares: staging and the atomic swap, the run's files, the bundle runtime.

A bundle is written into a temporary folder beside ``--out`` and renamed into place only when
every file is written and every deploy-time check has passed, so a failed or interrupted deploy
leaves nothing half-written (and ``--force`` replaces an old bundle only at that last step).

The Python bundles (cerebrium, watsonx, hf-endpoint) run on ONNX Runtime, numpy and Pillow
(+ SciPy for digit runs) and never import cnnkit or torch: the package ``cnnkit_bundle`` holds
``predictor.py`` (a template, package data) and cnnkit's own ``imageio.py`` / ``preprocess.py``,
copied from this installation at deploy time, so there is one definition of the preprocessing.
"""
from __future__ import annotations

import ast
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.export.onnx import ONNX_FILE, REPORT_FILE
from cnnkit.io import write_json, write_text
from cnnkit.runs import LoadedRun

TEMPLATES = Path(__file__).with_name("templates")
RUNTIME_PACKAGE = "cnnkit_bundle"
# Run files a bundle carries; checkpoints (optimizer state), eval caches and figures stay home.
RUN_FILES = ("model.safetensors", "model.json", "config.yaml", "metrics.json", "data.json", "env.json", "history.json",
             "status.json", "diagnosis.json")
# cnnkit modules copied into cnnkit_bundle, and the import lines that must become relative there.
VENDORED = {"errors.py": "cnnkit/errors.py", "imageio.py": "cnnkit/data/imageio.py", "preprocess.py": "cnnkit/data/preprocess.py",
            "dicom.py": "cnnkit/data/dicom.py"}
REWRITES = (("from cnnkit.errors import", "from .errors import"), ("from cnnkit.data.imageio import", "from .imageio import"),
            ("from cnnkit.data.dicom import", "from .dicom import"))
# pydicom is imported only when a DICOM upload arrives: a bundle reads .dcm once it is pip-installed.
THIRD_PARTY = frozenset({"numpy", "PIL", "scipy", "onnxruntime", "pydicom"})
WHY_ONNX = ("The bundle's code needs only ONNX Runtime, numpy and Pillow (and SciPy for digit runs, for the "
            "connected components of the photo preprocessing), not cnnkit or PyTorch: the model is the ONNX export "
            "that cnnkit checked against PyTorch on the run's test images, and the preprocessing is cnnkit's own "
            "decoding and digit-photo code, copied into `cnnkit_bundle/` when the bundle was written. That keeps the "
            "install small (tens of MB instead of PyTorch's hundreds), avoids version trouble between the platform's "
            "PyTorch and the one the run was trained with, and needs no package index that knows cnnkit.")


@dataclass
class Bundle:
    """One bundle being written: the run, its checked ONNX export, and the staging folder."""

    loaded: LoadedRun
    root: Path
    onnx_path: Path
    onnx_report: dict[str, Any]
    image: str
    data_dir: str | None = None
    verified: list[str] = field(default_factory=list)  # checked by cnnkit deploy, on this bundle
    tested: list[str] = field(default_factory=list)  # checked by cnnkit's test suite, on bundles written the same way
    not_verified: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)  # examples/expected.json: PyTorch's answers

    @property
    def name(self) -> str:
        return self.loaded.run.name

    @property
    def version(self) -> int:
        return self.loaded.run.version

    @property
    def ref(self) -> str:
        return self.loaded.ref

    @property
    def digits(self) -> bool:
        return self.loaded.spec["preprocess"].get("kind") == "digits"

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def text(self, rel: str, content: str) -> None:
        write_text(self.path(rel), content)

    def json(self, rel: str, obj: Any) -> None:
        write_json(self.path(rel), obj)


def check_out(out: Path, force: bool, keep: Path | None = None) -> None:
    """Refuse an --out that is a file, or a non-empty folder without --force, before any work; and
    never one that holds the working directory or ``keep`` (the run), which --force would delete."""
    where = out.resolve()
    for inside in (Path.cwd(), *([keep] if keep else [])):
        if inside.resolve().is_relative_to(where):
            raise CnnkitError(f"--out {out} holds {inside}; choose a folder of its own for the bundle")
    if out.exists() and not out.is_dir():
        raise CnnkitError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CnnkitError(f"--out {out} exists and is not empty; pass --force to replace it")


def staged(out: Path, force: bool, build: Callable[[Path], Any], keep: Path | None = None) -> Any:
    """``build(tmp)`` in a fresh folder beside ``out``, then swap it into place; on failure remove it."""
    check_out(out, force, keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        result = build(tmp)
        check_out(out, force, keep)  # someone may have written there meanwhile
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.time_ns()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return result
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def copy_run(b: Bundle, dest: str, with_onnx: bool = False) -> None:
    """The run version's own files (weights, model.json, config...); ``with_onnx`` adds its checked
    ONNX export where ``cnnkit serve --backend onnx`` looks for it (``export/``)."""
    src = b.loaded.run.path
    for name in RUN_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, b.path(f"{dest}/{name}"))
    if with_onnx:
        shutil.copy2(b.onnx_path, b.path(f"{dest}/{ONNX_FILE}"))
        b.json(f"{dest}/{REPORT_FILE}", {k: v for k, v in b.onnx_report.items() if k != "cached"})


def pinned(packages: Iterable[str]) -> list[str]:
    """``name==version`` for each package as installed here (where the export was checked)."""
    lines = []
    for name in packages:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise CnnkitError(f"{name} is not installed; install the serve extra (pip install \"cnnkit[serve]\")") from None
    return lines


def runtime_requirements(b: Bundle) -> list[str]:
    return pinned(["onnxruntime", "numpy", "Pillow", *(["scipy"] if b.digits else [])])


def _cnnkit_root() -> Path:
    import cnnkit

    return Path(cnnkit.__file__).resolve().parent.parent


def _check_imports(name: str, source: str) -> None:
    """A vendored module may import only the standard library, numpy, PIL, SciPy and its siblings."""
    for node in ast.walk(ast.parse(source)):
        mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        for mod in mods:
            top = mod.split(".")[0]
            if top not in sys.stdlib_module_names and top not in THIRD_PARTY and top != "__future__":
                raise CnnkitError(f"cannot copy {name} into a bundle: it imports {mod}, which bundles do not carry")


def write_runtime(b: Bundle, dest: str = RUNTIME_PACKAGE) -> None:
    """``cnnkit_bundle/``: the ONNX predictor and cnnkit's decoding and digit preprocessing."""
    root = _cnnkit_root()
    for name, rel in VENDORED.items():
        source = (root / rel).read_text()
        for old, new in REWRITES:
            source = source.replace(old, new)
        _check_imports(rel, source)
        b.text(f"{dest}/{name}", f"# Copied from cnnkit {_version()} ({rel}) by cnnkit deploy; do not edit here.\n" + source)
    shutil.copy2(TEMPLATES / "predictor.py", b.path(f"{dest}/predictor.py"))
    b.text(f"{dest}/__init__.py", '"""cnnkit\'s predictor for deploy bundles: ONNX Runtime, numpy and Pillow only."""\n'
                                  "from .predictor import OnnxPredictor\n\n__all__ = [\"OnnxPredictor\"]\n")


def write_model(b: Bundle, dest: str) -> None:
    """``model.onnx`` + ``model.json`` (classes, preprocessing) + the export's check + bundle.json."""
    shutil.copy2(b.onnx_path, b.path(f"{dest}/model.onnx"))
    b.json(f"{dest}/model.json", b.loaded.spec)
    b.json(f"{dest}/onnx.json", b.onnx_report)
    b.json(f"{dest}/bundle.json", {"name": b.name, "version": b.version, "run": b.ref, "cnnkit": _version()})


def _version() -> str:
    from cnnkit import __version__

    return __version__


def png(array: Any) -> bytes:
    """uint8 (C, S, S) -> PNG bytes (gray or RGB), as a user's image file would be."""
    from PIL import Image

    img = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def write_examples(b: Bundle, images: Any, dest: str = "examples", top_k: int = 3) -> list[dict[str, Any]]:
    """Test images as PNGs and what cnnkit's own (PyTorch) predictor says about them (``b.examples``)."""
    from cnnkit.predict import Predictor

    predictor = Predictor(b.loaded)
    blobs = [png(a.numpy()) for a in images]
    expected = []
    for i, (blob, preds) in enumerate(zip(blobs, predictor.predict(blobs, top_k))):
        b.path(f"{dest}/{i:02d}.png").write_bytes(blob)
        expected.append({"image": f"{dest}/{i:02d}.png", "predictions": [p.to_dict() for p in preds]})
    b.json(f"{dest}/expected.json", expected)
    b.examples = expected
    return expected


def write_python(b: Bundle, model_dir: str) -> list[str]:
    """The runtime, the model folder and requirements.txt; then the deploy-time self-check."""
    write_runtime(b)
    write_model(b, model_dir)
    copy_run(b, "run")
    reqs = runtime_requirements(b)
    b.text("requirements.txt", "\n".join(reqs) + "\n")
    b.verified.append(self_check(b, model_dir, b.examples))
    b.verified.append(f"`requirements.txt` pins the versions that check ran with: {', '.join(reqs)}")
    b.tested.append("a fresh virtual environment with only `requirements.txt` installed (no cnnkit, no torch) runs the "
                    "entry point on real test images and gets the same top-3 classes and probabilities (to 1e-4) as "
                    "`cnnkit predict` (tests/integration/test_deploy_fresh_venv.py)")
    return reqs


SELF_CHECK = """
import json, sys
from pathlib import Path
sys.path.insert(0, ".")
from cnnkit_bundle import OnnxPredictor
p = OnnxPredictor(sys.argv[1])
exp = json.loads(Path(sys.argv[2]).read_text())
got = p.predict([Path(e["image"]).read_bytes() for e in exp], top_k=len(exp[0]["predictions"]))
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("cnnkit", "torch")), "results": got}))
"""


def self_check(b: Bundle, model_dir: str, examples: list[dict[str, Any]], atol: float = 1e-4) -> str:
    """Run the bundle's predictor in a fresh interpreter on the example images; it must agree with PyTorch."""
    proc = subprocess.run([sys.executable, "-c", SELF_CHECK, model_dir, "examples/expected.json"], cwd=b.root,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
    if proc.returncode != 0:
        raise CnnkitError(f"the bundle's predictor failed on its example images: {proc.stderr.strip().splitlines()[-1:]}")
    out = json.loads(proc.stdout)
    if out["loaded"]:
        raise CnnkitError(f"the bundle's predictor imported {out['loaded']}; it must run without cnnkit and torch")
    worst = 0.0
    for want, got in zip(examples, out["results"]):
        if [p["index"] for p in want["predictions"]] != [p["index"] for p in got["predictions"]]:
            raise CnnkitError(f"the bundle's predictor disagrees with PyTorch on {want['image']}")
        worst = max(worst, *(abs(w["probability"] - g["probability"]) for w, g in zip(want["predictions"], got["predictions"])))
    if worst > atol:
        raise CnnkitError(f"the bundle's probabilities differ from PyTorch's by {worst:.2e} (> {atol})")
    return (f"`cnnkit_bundle.OnnxPredictor` (ONNX Runtime; neither cnnkit nor torch imported) gave the same top-k "
            f"classes as cnnkit's PyTorch predictor on the {len(examples)} test images in `examples/` "
            f"(max probability difference {worst:.1e})")


def encode_b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def readme(b: Bundle, target: str, intro: str, contents: list[str], commands: str, why: str = WHY_ONNX,
           before: str = "") -> None:
    """README.md: what is inside, the exact commands to go live, what was and was not verified offline.

    ``before`` is kept at the top (the hf-endpoint bundle's README is the Hub model card)."""
    sub = "##" if before else "#"  # below the card's own sections, one level down
    metrics = b.loaded.run.read("metrics.json", {}) or {}
    acc = metrics.get("test_accuracy", metrics.get("accuracy"))
    acc_text = f", test accuracy {acc:.4f}" if isinstance(acc, (int, float)) else ""
    head = f"# {b.ref}: {target} bundle" if not before else f"{before.rstrip()}\n\n## Deploy bundle: {target}"
    lines = [head, "",
             f"Written by `cnnkit deploy {b.ref} --target {target}` (cnnkit {_version()}) on {time.strftime('%Y-%m-%d %H:%M %Z')}: "
             f"model `{b.loaded.spec['name']}`, {len(b.loaded.classes)} classes{acc_text}. {intro}", "",
             f"{sub}# What is inside", "", *[f"- {c}" for c in contents], "",
             f"{sub}# Deploy", "", commands.strip(), "",
             f"{sub}# Verified offline", "", "What `cnnkit deploy` checked while writing this bundle:", "",
             *[f"- {v}" for v in b.verified], "",
             *(["What cnnkit's test suite checks on bundles written the same way (not re-run for this one):", "",
                *[f"- {v}" for v in b.tested], ""] if b.tested else []),
             f"{sub}# Not verified", "", "What cnnkit cannot check without the platform (do these yourself):", "",
             *[f"- {v}" for v in b.not_verified], ""]
    if why:
        lines += [f"{sub}# What the bundle's code needs, and why", "", why, ""]
    b.text("README.md", "\n".join(lines))
