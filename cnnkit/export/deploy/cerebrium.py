"""``--target cerebrium``: ``cerebrium.toml`` + ``main.py`` exposing ``predict(image, top_k=5)``.

Cerebrium turns each top-level function of ``main.py`` into a POST endpoint whose JSON body holds
its arguments; ``main.py`` loads the ONNX model once at import and ``predict`` answers with the
body of cnnkit's ``POST /predict``. CPU hardware, scale to zero, the pinned pip dependencies of
``requirements.txt`` (ONNX Runtime, numpy, Pillow, + SciPy for digit runs).
"""
from __future__ import annotations

import shutil
import sys
import tomllib

from cnnkit.errors import CnnkitError
from cnnkit.export.deploy import k8s
from cnnkit.export.deploy.bundle import TEMPLATES, Bundle, readme, write_python

HARDWARE = {"compute": "CPU", "cpu": 2, "memory": 4.0}
SCALING = {"min_replicas": 0, "max_replicas": 3, "cooldown": 60, "replica_concurrency": 1}


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def cerebrium_toml(b: Bundle, reqs: list[str]) -> str:
    deployment = {"name": k8s.dns_name(f"{b.name}-v{b.version}"), "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
                  "include": ["main.py", "cnnkit_bundle/*", "model/*"], "exclude": [".*"], "disable_auth": False}
    pip = dict(r.split("==", 1) for r in reqs)
    sections = [("cerebrium.deployment", deployment), ("cerebrium.hardware", HARDWARE), ("cerebrium.scaling", SCALING),
                ("cerebrium.dependencies.pip", {k: f"=={v}" for k, v in pip.items()})]
    out = [f"# Written by cnnkit deploy for {b.ref}. Reference: https://docs.cerebrium.ai/toml-reference/toml-reference"]
    for title, values in sections:
        out += ["", f"[{title}]", *[f"{k} = {toml_value(v)}" for k, v in values.items()]]
    return "\n".join(out) + "\n"


def write(b: Bundle) -> dict:
    reqs = write_python(b, "model")
    shutil.copy2(TEMPLATES / "cerebrium_main.py", b.path("main.py"))
    text = cerebrium_toml(b, reqs)
    parsed = tomllib.loads(text)["cerebrium"]  # the file must read back as what we meant
    if parsed["hardware"]["compute"] != "CPU" or sorted(f"{k}{v}" for k, v in parsed["dependencies"]["pip"].items()) != sorted(reqs):
        raise CnnkitError("cerebrium.toml does not read back as written")
    b.text("cerebrium.toml", text)
    name = k8s.dns_name(f"{b.name}-v{b.version}")
    b.verified.append("`cerebrium.toml` reads back (tomllib) with CPU hardware, scaling and the same pins as requirements.txt")
    b.tested.append("`main.py` imported in a fresh process: `predict(image, top_k)` on real test images answers with the "
                    "shape of `POST /predict` and the classes and probabilities of `cnnkit predict`")
    b.not_verified += ["`cerebrium deploy` itself (the build on Cerebrium, the endpoint's URL and authentication, cold "
                       "starts, scaling): cnnkit has no Cerebrium account",
                       "whether Cerebrium's Python image still offers the pinned wheels (they are on PyPI for CPython "
                       f"{sys.version_info[0]}.{sys.version_info[1]} on Linux x86-64)"]
    commands = f"""```bash
pip install cerebrium && cerebrium login
cerebrium deploy                                  # from this folder; prints the endpoint URL
python -c "import base64; print(base64.b64encode(open('examples/00.png','rb').read()).decode())" > /tmp/img.b64
curl -X POST https://api.aws.us-east-1.cerebrium.ai/v4/PROJECT_ID/{name}/predict \\   # the URL cerebrium deploy printed
  -H "Authorization: Bearer $CEREBRIUM_TOKEN" -H 'Content-Type: application/json' \\
  -d "{{\\"image\\": \\"$(cat /tmp/img.b64)\\", \\"top_k\\": 3}}"
```

Locally, without Cerebrium (what cnnkit's tests do, in a fresh virtual environment):

```bash
python -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt
python -c "import base64, main; print(main.predict(base64.b64encode(open('examples/00.png','rb').read()).decode(), 3))"
```"""
    contents = ["`main.py`: `predict(image: str, top_k: int = 5)`; base64 image in, the body of cnnkit's `POST /predict` out",
                "`cerebrium.toml`: CPU hardware (2 vCPU, 4 GB), 0-3 replicas, the pip pins",
                "`cnnkit_bundle/`: the ONNX predictor and cnnkit's image decoding and digit-photo preprocessing",
                "`model/`: `model.onnx` (checked export), `model.json` (classes, preprocessing), `onnx.json` (its check)",
                "`run/`: the run (weights, model.json, config, metrics)", "`requirements.txt`: the same pins, for a local run",
                "`examples/`: test images and PyTorch's predictions"]
    readme(b, "cerebrium", "Cerebrium serves `main.py`'s `predict` as a POST endpoint.", contents, commands)
    return {"entry_point": "main.py:predict", "requirements": reqs}
