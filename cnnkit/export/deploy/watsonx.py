"""``--target watsonx``: the ONNX export as watsonx.ai stores it, ``deploy.py``, ``payload.json``, ``score_local.py``.

watsonx.ai stores an ONNX model as a ``.tar.gz`` holding the ``.onnx`` file, of type
``onnxruntime_1.16`` on the software specification ``onnxruntime_opset_19`` (opset 19 and below;
cnnkit exports opset 18). The online deployment scores the graph itself, so a request carries the
normalized float tensor: ``payload.json`` holds real test images preprocessed exactly as cnnkit
does (``{"input_data": [{"id": "input", "values": [N, C, H, W]}]}``), and ``score_local.py`` runs
that payload through ONNX Runtime as the service would. ``deploy.py`` makes the ibm-watsonx-ai calls.
"""
from __future__ import annotations

import shutil
import tarfile

import numpy as np
import torch

from cnnkit.export.deploy.bundle import TEMPLATES, Bundle, copy_run, pinned, readme, write_model

MODEL_TYPE, SOFTWARE_SPEC = "onnxruntime_1.16", "onnxruntime_opset_19"
MAX_OPSET = 19
SDK = "ibm-watsonx-ai>=1.3,<2"
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


def write(b: Bundle) -> dict:
    opset = int(b.onnx_report.get("opset", 0))
    write_model(b, "model")
    copy_run(b, "run")
    with tarfile.open(b.path("model/model.tar.gz"), "w:gz") as tar:
        tar.add(b.path("model/model.onnx"), arcname="model.onnx")
    body = payload(b)
    b.json("payload.json", body)
    n = len(body["input_data"][0]["values"])
    b.json("payload_expected.json", [e["predictions"][0]["label"] for e in b.examples[:n]])
    b.json("watsonx.json", {"name": f"{b.name}-v{b.version}", "deployment_name": f"{b.name}-v{b.version}-online",
                            "model_archive": "model/model.tar.gz", "model_type": MODEL_TYPE, "software_spec": SOFTWARE_SPEC,
                            "opset": opset, "classes": b.loaded.classes})
    shutil.copy2(TEMPLATES / "watsonx_deploy.py", b.path("deploy.py"))
    shutil.copy2(TEMPLATES / "watsonx_score_local.py", b.path("score_local.py"))
    reqs = pinned(["onnxruntime", "numpy"])
    b.text("requirements.txt", "\n".join(reqs) + "\n")
    b.text("requirements-deploy.txt", SDK + "\n")
    if opset > MAX_OPSET:
        b.not_verified.append(f"the export is opset {opset}, newer than {SOFTWARE_SPEC} accepts: pick a newer spec in watsonx.json")
    b.verified += [
        f"`model/model.tar.gz` holds `model.onnx` (opset {opset}) as watsonx.ai stores ONNX models "
        f"(type `{MODEL_TYPE}`, software specification `{SOFTWARE_SPEC}`)",
        f"`payload.json` holds {n} real test images, preprocessed as cnnkit does; cnnkit's tests run `score_local.py` on it "
        "(ONNX Runtime, in a fresh virtual environment with requirements.txt only) and get the labels in "
        "`payload_expected.json`, which are PyTorch's",
        "`python deploy.py --dry-run` prints the SDK calls without credentials and without importing ibm_watsonx_ai"]
    b.not_verified += [
        "every call to watsonx.ai (authentication, `repository.store_model`, `deployments.create`, `deployments.score`): "
        "cnnkit has no IBM Cloud account; `requirements-deploy.txt` is a version range, not a tested pin",
        f"that your region still offers `{SOFTWARE_SPEC}` (list them with `client.software_specifications.list()`), "
        "and the exact shape of the service's response (deploy.py reads `predictions[*].values`)"]
    commands = """```bash
python -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt -r requirements-deploy.txt
python score_local.py --labels                 # the payload through ONNX Runtime, here
python deploy.py --dry-run                     # the calls deploy.py will make
export WATSONX_URL=https://us-south.ml.cloud.ibm.com WATSONX_APIKEY=... WATSONX_SPACE_ID=...
python deploy.py                               # store, deploy online, score payload.json; prints the labels
```"""
    contents = ["`run/`: the run (weights, model.json with classes and preprocessing, config, metrics)",
                "`model/model.tar.gz`: the upload (`model.onnx` inside); `model/model.onnx`, `model.json`, `onnx.json`",
                "`deploy.py`: ibm-watsonx-ai calls (credentials from WATSONX_URL, WATSONX_APIKEY, WATSONX_SPACE_ID; `--dry-run`)",
                "`watsonx.json`: names, model type, software specification, classes",
                "`payload.json`: real test images in the scoring format; `payload_expected.json`: PyTorch's labels for them",
                "`score_local.py`: scores a payload with ONNX Runtime as the service does",
                "`requirements.txt` (score_local: ONNX Runtime, numpy), `requirements-deploy.txt` (the SDK)",
                "`examples/`: the test images as PNGs and PyTorch's predictions"]
    why = ("watsonx.ai runs the ONNX graph on its own ONNX Runtime, so nothing of cnnkit runs there: a scoring request "
           "carries the normalized tensor, and turning images into it is cnnkit's preprocessing (done here for "
           "`payload.json`; for new images use `cnnkit_bundle` from the cerebrium or hf-endpoint bundle, or cnnkit).")
    readme(b, "watsonx", "watsonx.ai runs the ONNX export on its ONNX Runtime software specification.", contents, commands, why=why)
    return {"model_type": MODEL_TYPE, "software_spec": SOFTWARE_SPEC, "payload_images": n}
