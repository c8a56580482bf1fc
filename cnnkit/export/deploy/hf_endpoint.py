"""``--target hf-endpoint``: the run's Hugging Face Hub folder plus a custom ``handler.py`` for Inference Endpoints.

The folder is the export issue's Hub folder (``cnnkit.export.hf``: weights, config.json, model
card, figures, ``model.onnx``), to which this adds ``handler.py`` (``EndpointHandler(path)`` and
``__call__(data)``, the interface Inference Endpoints call), ``requirements.txt`` (the endpoint
installs it), ``cnnkit_bundle/`` and ``model.json``. The card gains a section on the endpoint.
"""
from __future__ import annotations

import shutil

from cnnkit.export.deploy.bundle import TEMPLATES, Bundle, readme, write_python

HUB_FILES = "model.safetensors, config.json, the model card, figures, model.onnx"


def write(b: Bundle) -> dict:
    from cnnkit.export.hf import hf_for_run

    folder, report = hf_for_run(b.loaded, b.data_dir, include_onnx=True)
    card = (folder / "README.md").read_text()
    for p in folder.iterdir():
        if p.is_file() and p.name != "README.md":
            shutil.copy2(p, b.path(p.name))
    reqs = write_python(b, ".")
    shutil.copy2(TEMPLATES / "hf_handler.py", b.path("handler.py"))
    b.verified += [f"the Hub folder was written by `cnnkit export` (cnnkit.export.hf: {HUB_FILES})",
                   ]
    b.tested.append("`EndpointHandler(path=DIR)({\"inputs\": ...})` on real test images given as PIL images, bytes and "
                    "base64 (and a list of them) gives the classes and probabilities of `cnnkit predict`")
    b.not_verified += ["the push to the Hub and the endpoint itself (its image installing requirements.txt, the "
                       "hardware, the URL and token): cnnkit has no Hugging Face account here",
                       "how the endpoint's default container decodes an image upload before calling the handler "
                       "(the handler accepts PIL images, bytes and base64 alike)",
                       "the `hf endpoints deploy` flags below (framework and task names for a custom handler, instance "
                       "names): taken from the CLI's help, never run"]
    commands = """```bash
pip install -U huggingface_hub && hf auth login
hf repos create OWNER/REPO --type model
hf upload OWNER/REPO . .                          # this folder, handler.py and requirements.txt included
hf endpoints hardware                             # the vendor/region/instance combinations you may pick
hf endpoints deploy NAME --repo OWNER/REPO --framework pytorch --task custom --accelerator cpu \\
  --vendor aws --region us-east-1 --instance-type intel-icl --instance-size x2
hf endpoints describe NAME                        # its URL once it is running (or use the web UI: Task "Custom")
curl "$ENDPOINT_URL" -H "Authorization: Bearer $HF_TOKEN" -H 'Content-Type: image/png' --data-binary @examples/00.png
curl "$ENDPOINT_URL" -H "Authorization: Bearer $HF_TOKEN" -H 'Content-Type: application/json' \\
  -d "{\\"inputs\\": \\"$(base64 -w0 examples/00.png)\\", \\"parameters\\": {\\"top_k\\": 3}}"
```

Locally, without an endpoint (what cnnkit's tests do, in a fresh virtual environment):

```bash
python -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt
python -c "from handler import EndpointHandler; print(EndpointHandler('.')({'inputs': open('examples/00.png','rb').read()}))"
```"""
    contents = [f"the Hub folder: {HUB_FILES}", "`handler.py`: `EndpointHandler(path)(data)`, `data[\"inputs\"]` an image "
                "(PIL, bytes or base64) or a list of them -> `[{\"label\", \"score\"}]` (top 5, `parameters.top_k`)",
                "`cnnkit_bundle/`, `model.json`, `bundle.json`: the ONNX predictor and the run's classes and preprocessing",
                "`run/`: the run's own files", "`requirements.txt`: installed by the endpoint",
                "`examples/`: test images and PyTorch's predictions"]
    readme(b, "hf-endpoint", "A Hugging Face Inference Endpoint runs `handler.py` on this repository.", contents, commands,
           before=card)
    return {"entry_point": "handler.py:EndpointHandler", "requirements": reqs, "hub_folder_cached": bool(report.get("cached"))}
