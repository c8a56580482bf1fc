"""``--target watsonx``: the ONNX export as watsonx.ai stores it, ``deploy.py``, ``payload.json``, ``score_local.py``.

watsonx.ai stores an ONNX model as a ``.tar.gz`` holding the ``.onnx`` file, of type
``onnxruntime_1.16`` on the software specification ``onnxruntime_opset_19`` (opset 19 and below;
cnnkit exports opset 18). The online deployment scores the graph itself, so a request carries the
normalized float tensor: ``payload.json`` holds real test images preprocessed exactly as cnnkit
does (``{"input_data": [{"id": "input", "values": [N, C, H, W]}]}``), and ``score_local.py`` runs
that payload through ONNX Runtime as the service would. ``deploy.py`` makes the ibm-watsonx-ai calls.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.export.deploy.bundle import TEMPLATES, Bundle, copy_run, readme, write_model

MODEL_TYPE, SOFTWARE_SPEC = "onnxruntime_1.16", "onnxruntime_opset_19"
# ONNX Runtime 1.16 reads opsets up to 19 and IR versions up to 9; today's exporter writes IR 10.
MAX_OPSET, MAX_IR = 19, 9
# score_local.py's requirements: the ONNX Runtime of that software specification (and a numpy it was built for).
SERVICE_RUNTIME = ("onnxruntime==1.16.3", "numpy==1.26.4")
# The SDK release deploy.py's calls were checked against (names and signatures; none executed).
SDK = "ibm-watsonx-ai==1.8.1"
MAX_PAYLOAD_VALUES = 200_000  # keep payload.json small (a few MB at most) for big inputs


def payload(b: Bundle) -> dict:
    """The example images, preprocessed and normalized as cnnkit's PyTorch path does, in scoring format."""
    from cnnkit.predict import Predictor

    predictor = Predictor(b.loaded)
    blobs = [b.path(e["image"]).read_bytes() for e in b.examples]
    per_image = int(np.prod(predictor.pipeline(torch.zeros(1, *predictor.prepare(blobs[0]).array.shape, dtype=torch.uint8)).shape))
    n = max(1, min(len(blobs), MAX_PAYLOAD_VALUES // per_image))
    batch = torch.from_numpy(np.stack([predictor.prepare(blob).array for blob in blobs[:n]]))
    x = predictor.pipeline(batch).numpy().astype(np.float32)
    return {"input_data": [{"id": "input", "values": np.round(x, 6).tolist()}]}


def for_runtime(b: Bundle, rel: str) -> str:
    """Mark the export as IR ``MAX_IR`` when it is newer and uses nothing newer (checked), so ORT 1.16 loads it.

    IR 10 added 4-bit types and attributes on model-local functions; cnnkit's CNNs use neither, and
    ``onnx.checker`` at IR 9 is the proof. The graph is untouched: outputs are compared below.
    """
    import onnx

    path = b.path(rel)
    model = onnx.load(str(path))
    if model.ir_version <= MAX_IR:
        return f"IR version {model.ir_version}"
    old = model.ir_version
    model.ir_version = MAX_IR
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise CnnkitError(f"the ONNX export needs IR version {old}; watsonx.ai's {SOFTWARE_SPEC} reads up to {MAX_IR} ({exc})") from None
    onnx.save(model, str(path))
    return f"IR version {MAX_IR} (the exporter wrote {old}; onnx.checker passes at {MAX_IR})"


def same_outputs(a: Path, b: Path, x: np.ndarray) -> None:
    from cnnkit.export.onnx import session

    if not np.array_equal(session(a).run(None, {"input": x})[0], session(b).run(None, {"input": x})[0]):
        raise CnnkitError("the IR-version change altered the ONNX model's outputs")


def check(b: Bundle, labels: list[str]) -> str:
    """Run score_local.py and deploy.py --dry-run from the bundle, in fresh interpreters, without credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATSONX") and k != "PYTHONPATH"}
    runs = [subprocess.run([sys.executable, script, *args], cwd=b.root, env=env, capture_output=True, text=True, timeout=300)
            for script, *args in (("score_local.py", "--labels"), ("deploy.py", "--dry-run"))]
    for proc in runs:
        if proc.returncode != 0:
            raise CnnkitError(f"a watsonx bundle script failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    got = json.loads(runs[0].stdout)["labels"]
    if got != labels:
        raise CnnkitError(f"score_local.py labels {got} differ from PyTorch's {labels}")
    return (f"`score_local.py --labels` (ONNX Runtime) scored `payload.json` with PyTorch's labels on all {len(labels)} "
            f"images, and `deploy.py --dry-run` printed its {len(runs[1].stdout.splitlines())} calls without credentials "
            "or ibm_watsonx_ai")


# The bundle README's commands and its list of files.
COMMANDS = """```bash
python -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt -r requirements-deploy.txt
python score_local.py --labels                 # the payload through ONNX Runtime, here
python deploy.py --dry-run                     # the calls deploy.py will make
export WATSONX_URL=https://us-south.ml.cloud.ibm.com WATSONX_APIKEY=... WATSONX_SPACE_ID=...
python deploy.py                               # store, deploy online, score payload.json; prints the labels
```"""
CONTENTS = ["`run/`: the run (weights, model.json with classes and preprocessing, config, metrics)",
            "`model/model.tar.gz`: the upload (`model.onnx` inside); `model/model.onnx`, `model.json`, `onnx.json`",
            "`deploy.py`: ibm-watsonx-ai calls (credentials from WATSONX_URL, WATSONX_APIKEY, WATSONX_SPACE_ID; `--dry-run`)",
            "`watsonx.json`: names, model type, software specification, classes",
            "`payload.json`: real test images in the scoring format; `payload_expected.json`: PyTorch's labels for them",
            "`score_local.py`: scores a payload with ONNX Runtime as the service does",
            "`requirements.txt`: score_local.py's, pinned to the service's ONNX Runtime 1.16.3",
            "`requirements-deploy.txt`: the SDK deploy.py was checked against",
            "`examples/`: the test images as PNGs and PyTorch's predictions"]


def write(b: Bundle) -> dict:
    opset = int(b.onnx_report.get("opset", 0))
    write_model(b, "model")
    copy_run(b, "run")
    ir = for_runtime(b, "model/model.onnx")
    body = payload(b)
    same_outputs(b.onnx_path, b.path("model/model.onnx"), np.asarray(body["input_data"][0]["values"], dtype=np.float32))
    with tarfile.open(b.path("model/model.tar.gz"), "w:gz") as tar:
        tar.add(b.path("model/model.onnx"), arcname="model.onnx")
    b.json("payload.json", body)
    n = len(body["input_data"][0]["values"])
    b.json("payload_expected.json", [e["predictions"][0]["label"] for e in b.examples[:n]])
    b.json("watsonx.json", {"name": f"{b.name}-v{b.version}", "deployment_name": f"{b.name}-v{b.version}-online",
                            "model_archive": "model/model.tar.gz", "model_type": MODEL_TYPE, "software_spec": SOFTWARE_SPEC,
                            "opset": opset, "classes": b.loaded.classes})
    shutil.copy2(TEMPLATES / "watsonx_deploy.py", b.path("deploy.py"))
    shutil.copy2(TEMPLATES / "watsonx_score_local.py", b.path("score_local.py"))
    b.text("requirements.txt", "\n".join(SERVICE_RUNTIME) + "\n")
    b.text("requirements-deploy.txt", SDK + "\n")
    if opset > MAX_OPSET:
        b.not_verified.append(f"the export is opset {opset}, newer than {SOFTWARE_SPEC} accepts: pick a newer spec in watsonx.json")
    b.verified += [
        f"`model/model.tar.gz` holds `model.onnx` (opset {opset}, {ir}) as watsonx.ai stores ONNX models "
        f"(type `{MODEL_TYPE}`, software specification `{SOFTWARE_SPEC}`: ONNX Runtime 1.16, opset <= {MAX_OPSET}, IR <= {MAX_IR}); "
        "its outputs on the payload equal the checked export's exactly",
        f"`payload.json` holds {n} real test images, preprocessed as cnnkit's PyTorch path does; "
        "`payload_expected.json` holds PyTorch's labels for them",
        check(b, [e["predictions"][0]["label"] for e in b.examples[:n]])]
    b.tested.append("`score_local.py` in a fresh virtual environment with requirements.txt only (ONNX Runtime 1.16.3, the "
                    "service's) gives the labels of `payload_expected.json`; the exporter's IR-10 file fails to load there")
    b.not_verified += [
        "every call to watsonx.ai (authentication, `repository.store_model`, `deployments.create`, `deployments.score`): "
        "cnnkit has no IBM Cloud account; deploy.py's calls were checked by name and signature against "
        f"{SDK} (requirements-deploy.txt) when cnnkit's watsonx target was written, never executed",
        f"that your region still offers `{SOFTWARE_SPEC}` (list them with `client.software_specifications.list()`), "
        "and the exact shape of the service's response (deploy.py reads `predictions[*].values`)"]
    why = ("watsonx.ai runs the ONNX graph on its own ONNX Runtime, so nothing of cnnkit runs there: a scoring request "
           "carries the normalized tensor, and turning images into it is cnnkit's preprocessing (done here for "
           "`payload.json`; for new images use `cnnkit_bundle` from the cerebrium or hf-endpoint bundle, or cnnkit).")
    readme(b, "watsonx", "watsonx.ai runs the ONNX export on its ONNX Runtime software specification.", CONTENTS, COMMANDS, why=why)
    return {"model_type": MODEL_TYPE, "software_spec": SOFTWARE_SPEC, "payload_images": n}
