"""``cnnkit deploy``: one self-contained bundle per platform, each checked offline as far as it can be.

``deploy(ref, target, out)`` loads the run, takes its checked ONNX export (``onnx_for_run``),
writes the target's bundle into a temporary folder beside ``out`` and renames it into place only
once every file is written and every deploy-time check has passed. Targets, one module each:

- ``docker``: the repository's multi-stage Dockerfile as a build context with the run baked in;
- ``kserve``: an InferenceService (v1beta1) with cnnkit's server as a custom v2 predictor on 8080;
- ``k8s``: Deployment, Service, HPA (autoscaling/v2), PodDisruptionBudget, strictly validated;
- ``cerebrium``: ``cerebrium.toml`` + ``main.py`` with ``predict(image, top_k=5)``;
- ``watsonx``: the ONNX archive, ``deploy.py`` (ibm-watsonx-ai), ``payload.json``, ``score_local.py``;
- ``hf-endpoint``: the Hub folder + ``handler.py`` (``EndpointHandler``) + ``requirements.txt``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError

TARGETS = {"docker": "docker", "kserve": "kserve", "k8s": "k8s", "cerebrium": "cerebrium", "watsonx": "watsonx",
           "hf-endpoint": "hf_endpoint"}
EXAMPLES = 8  # test images written into every bundle (examples/) with PyTorch's predictions


def default_image(name: str, version: int) -> str:
    from cnnkit.export.deploy.k8s import dns_name

    return f"cnnkit-{dns_name(name)}:v{version}"


def deploy(ref: str, target: str, out: str | Path, force: bool = False, runs_dir: str | None = None,
           data_dir: str | None = None, image: str | None = None) -> dict[str, Any]:
    """Write ``target``'s bundle of run ``ref`` to ``out``; returns a summary (files, what was verified)."""
    if target not in TARGETS:
        raise CnnkitError(f"unknown deploy target {target!r} (targets: {', '.join(TARGETS)})")
    from cnnkit.export.deploy.bundle import Bundle, check_out, staged, write_examples
    from cnnkit.export.onnx import check_images, onnx_for_run
    from cnnkit.runs import load

    out = Path(out)
    check_out(out, force)
    loaded = load(ref, runs_dir)
    check_out(out, force, keep=loaded.run.path)
    onnx_path, report = onnx_for_run(loaded, data_dir)
    images = check_images(loaded, data_dir, EXAMPLES)
    module = importlib.import_module(f"cnnkit.export.deploy.{TARGETS[target]}")

    def build(root: Path) -> dict[str, Any]:
        b = Bundle(loaded, root, onnx_path, report, image or default_image(loaded.run.name, loaded.run.version), data_dir)
        b.verified.append(f"the ONNX export (opset {report.get('opset')}) agrees with PyTorch on {report['images']} test images "
                          f"of the run's data: same class on every one, max |logit difference| {report['max_abs_diff']:.1e}")
        write_examples(b, images)
        info = module.write(b)
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        return {"run": loaded.ref, "target": target, "out": str(out), **info, "files": len(files),
                "verified": b.verified, "not_verified": b.not_verified}

    return staged(out, force, build, keep=loaded.run.path)
