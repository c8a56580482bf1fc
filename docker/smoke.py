"""Build-time smoke test for the image: start `cnnkit serve`, call /predict and /v2, stop.

Serves the first run baked into /runs, or, when none is baked in, a freshly initialized tiny
run (random weights: this checks the server and its dependencies, not a model's accuracy).
Exits non-zero, failing the image build, if anything does not answer as documented.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image, ImageDraw


def tiny_run(root: Path) -> str:
    from cnnkit.models import build_model
    from cnnkit.runs import RunStore

    spec = {"name": "cnn", "kwargs": {"width": 8}, "num_classes": 10, "in_channels": 1, "image_size": 28,
            "classes": [str(i) for i in range(10)],
            "preprocess": {"kind": "digits", "channels": 1, "stored_size": 28, "input_size": 28,
                           "resize": "shorter-side, center-crop", "mean": [0.1307], "std": [0.3081]}}
    run = RunStore(root).create("smoke")
    run.save_weights(build_model("cnn", 10, 1, 28, width=8).eval(), spec)
    run.save_config({"data": {"name": "mnist"}, "model": {"name": "cnn", "kwargs": {"width": 8}}})
    run.set_status("finished")
    return str(run.path)


def post(url: str, body: bytes, content_type: str) -> dict:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def main() -> int:
    runs = sorted(p.parent for p in Path("/runs").glob("*/v*/model.json"))
    ref = str(runs[0]) if runs else tiny_run(Path(tempfile.mkdtemp()) / "runs")
    server = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", ref, "--port", "8123"])
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen("http://127.0.0.1:8123/v2/health/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit("smoke: the server did not become ready")
        img = Image.new("L", (120, 120), 255)
        ImageDraw.Draw(img).line([(40, 20), (90, 20), (60, 100)], fill=0, width=9)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        boundary = "smokeboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
        out = post("http://127.0.0.1:8123/predict?top_k=3", body, f"multipart/form-data; boundary={boundary}")
        preds = out["results"][0]["predictions"]
        assert len(preds) == 3 and abs(sum(p["probability"] for p in preds)) <= 1.0001, out
        meta = json.loads(urllib.request.urlopen("http://127.0.0.1:8123/v2/models/" + out["model"]).read())
        assert meta["inputs"][0]["datatype"] == "UINT8", meta
        print(f"smoke: /predict answered {preds[0]} from {out['model']}:v{out['version']}; /v2 metadata ok")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
