"""The HTTP API on a real (small) MNIST run: in-process with TestClient, and a real uvicorn
server on 127.0.0.1 for the official tritonclient, schemathesis and a hot swap under load."""
from __future__ import annotations

import base64
import io
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fastapi  # noqa: E402,F401 - dev extra: missing must fail, not skip
import httpx  # noqa: E402
import numpy as np
import pytest
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image

from cnnkit.serve.app import create_app  # noqa: E402
from cnnkit.serve.server import resolve_models  # noqa: E402
from cnnkit.serve.settings import Limits, ServeSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir: Path) -> Path:
    """A quick MNIST cnn run (v1) and a copy of it as v2, for versions and hot swaps."""
    import cnnkit

    root = tmp_path_factory.mktemp("serve-runs")
    cnnkit.train(data={"name": "mnist", "data_dir": str(data_dir), "limit": 3000},
                 model={"name": "cnn"}, train={"epochs": 1, "batch_size": 64, "progress": False, "threads": 1},
                 run={"name": "digits", "runs_dir": str(root)})
    shutil.copytree(root / "digits" / "v1", root / "digits" / "v2")
    return root


@pytest.fixture(scope="module")
def mnist(data_dir: Path):
    from cnnkit.data.builtins import load_builtin

    return load_builtin("mnist", data_dir, download=False).test


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def settings_for(runs: Path, refs=("digits:v1",), **kw) -> ServeSettings:
    return ServeSettings(models=resolve_models(list(refs), str(runs)), runs_dir=str(runs), **kw)


@pytest.fixture(scope="module", params=["fastpath", "framework"])
def client(runs: Path, request):
    """Every test against both ways a POST /predict is answered (cnnkit.serve.fastpath, or FastAPI's route)."""
    with TestClient(create_app(settings_for(runs, limits=Limits(max_request_bytes=2_000_000, max_images=8)))) as c:
        if request.param == "framework":
            c.app.fast = None
        yield c


def files(*blobs: bytes, kind: str = "image/png"):
    return [("file", (f"{i}.png", b, kind)) for i, b in enumerate(blobs)]


def test_the_mnist_format_shortcut_keeps_the_answers(runs, mnist):
    """Issue 17: MNIST-format uploads skip the digit recipe; the model's labels stay the same."""
    import torch

    from cnnkit.data.preprocess import digit_image
    from cnnkit.predict import Predictor

    predictor = Predictor.from_run("digits:v1", runs)
    images, labels = mnist.images[:1000, 0].numpy(), mnist.labels[:1000].numpy()
    labels_of = {}
    for shortcut in (True, False):
        batch = np.stack([digit_image(img, shortcut=shortcut)[0] for img in images])[:, None]
        labels_of[shortcut] = predictor.probabilities(torch.from_numpy(batch)).argmax(1).numpy()
    assert (labels_of[True] != labels_of[False]).sum() <= 5  # at most a borderline few of 1,000
    assert (labels_of[True] == labels).mean() >= (labels_of[False] == labels).mean() - 0.002


def test_predict_multipart_many_images_in_order(client, mnist):
    blobs = [png(mnist.images[i, 0].numpy()) for i in range(6)]
    r = client.post("/predict?top_k=3", files=files(*blobs))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "digits" and body["version"] == 1 and len(body["results"]) == 6
    for res in body["results"]:
        probs = [p["probability"] for p in res["predictions"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert set(res["predictions"][0]) == {"index", "label", "probability"}
        assert res["preprocessing"] == ["mnist-format"]  # MNIST test digits need no step
    top = [res["predictions"][0]["index"] for res in body["results"]]
    assert sum(t == y for t, y in zip(top, mnist.labels[:6].tolist())) >= 4
    # Each answer belongs to its own image: the same images one by one give the same answers.
    for blob, res in zip(blobs[:3], body["results"]):
        alone = client.post("/predict?top_k=3", files=files(blob)).json()["results"][0]
        assert alone["predictions"][0]["index"] == res["predictions"][0]["index"]
        assert alone["predictions"][0]["probability"] == pytest.approx(res["predictions"][0]["probability"], abs=1e-4)


def test_json_base64_raw_body_and_data_urls(client, mnist):
    blob = png(mnist.images[0, 0].numpy())
    b64 = base64.b64encode(blob).decode()
    a = client.post("/predict", json={"images": [b64, "data:image/png;base64," + b64]}).json()
    b = client.post("/predict", content=blob, headers={"content-type": "image/png"}).json()
    assert a["results"][0]["predictions"] == a["results"][1]["predictions"] == b["results"][0]["predictions"]


def test_preprocessing_is_reported_and_can_be_switched_off(client, mnist):
    paper = 255 - mnist.images[0, 0].numpy()  # dark ink on white, as on paper
    big = np.asarray(Image.fromarray(paper).resize((140, 140)))
    auto = client.post("/predict?include_input=true", files=files(png(big))).json()["results"][0]
    plain = client.post("/predict?preprocess=plain&include_input=true", files=files(png(big))).json()["results"][0]
    assert "invert" in auto["preprocessing"] and plain["preprocessing"] == ["resize-28x28"]
    seen = Image.open(io.BytesIO(base64.b64decode(auto["input"].split(",", 1)[1])))
    assert seen.size == (28, 28) and np.asarray(seen)[0].max() == 0  # light ink on black, as MNIST
    assert auto["predictions"][0]["index"] == int(mnist.labels[0])


def test_models_versions_and_unknown_names(client, mnist):
    listed = client.get("/models").json()
    assert listed["default"] == "digits" and [m["version"] for m in listed["models"]] == [1]
    blob = png(mnist.images[0, 0].numpy())
    assert client.post("/models/digits/predict", files=files(blob)).status_code == 200
    assert client.post("/models/digits/versions/1/predict", files=files(blob)).status_code == 200
    for path, kind in [("/models/nope/predict", "unknown_model"), ("/models/digits/versions/7/predict", "unknown_version"),
                       ("/models/digits/versions/x/predict", "unknown_version")]:
        r = client.post(path, files=files(blob))
        assert r.status_code == 404 and r.json()["kind"] == kind


def _bomb() -> bytes:
    """A valid PNG header claiming 30000 x 30000 pixels (900 M) with almost no data."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("make, status, kind", [
    (lambda g: files(b"not an image at all"), 422, "bad_image"),
    (lambda g: files(g[: len(g) // 2]), 422, "bad_image"),  # truncated
    (lambda g: files(b""), 422, "bad_image"),
    (lambda g: files(_bomb()), 413, "bad_image"),
    (lambda g: files(*[g] * 9), 422, "too_many_images"),
])
def test_bad_images_are_4xx_with_a_reason(client, mnist, make, status, kind):
    good = png(mnist.images[0, 0].numpy())
    r = client.post("/predict", files=make(good))
    assert r.status_code == status and r.json()["kind"] == kind and r.json()["error"]


@pytest.mark.parametrize("kwargs, status, kind", [
    ({"content": b"x" * 2_100_000, "headers": {"content-type": "image/png"}}, 413, "too_large"),
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_type"),
    ({"json": {"images": ["***"]}}, 422, "bad_base64"),
    ({"json": {"images": "abc"}}, 422, "bad_json"),
    ({"json": {"images": [], "x": 1}}, 422, "bad_json"),
    ({"json": {"images": []}}, 422, "no_images"),
    ({"content": b"{", "headers": {"content-type": "application/json"}}, 400, "bad_json"),
    ({"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}, 400, "bad_form"),
    ({"files": {"other": ("a.png", b"1", "image/png")}}, 422, "bad_form"),
])
def test_bad_requests_are_4xx_with_a_reason(client, kwargs, status, kind):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status and r.json()["kind"] == kind, r.text


def test_query_validation_is_json_4xx(client, mnist):
    r = client.post("/predict?top_k=0", files=files(png(mnist.images[0, 0].numpy())))
    assert r.status_code == 422 and r.json()["kind"] == "validation" and "top_k" in r.json()["error"]
    assert client.get("/nowhere").json()["kind"] == "not_found"


def test_explain_returns_a_gradcam_map_and_overlay(client, mnist):
    r = client.post("/explain?target=3", files=files(png(mnist.images[0, 0].numpy())))
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]
    heat = np.array(res["heatmap"])
    assert heat.shape == (28, 28) and 0 <= heat.min() and heat.max() <= 1 and heat.max() > 0
    assert res["target"] == 3 and res["overlay"].startswith("data:image/png;base64,") and res["layer"]
    assert client.post("/explain?target=99", files=files(png(mnist.images[0, 0].numpy()))).status_code == 422


def test_metrics_count_requests_errors_batches(client, mnist):
    client.post("/predict", files=files(png(mnist.images[0, 0].numpy())))
    client.post("/predict", files=files(b"junk"))
    text = client.get("/metrics").text
    assert 'cnnkit_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'cnnkit_errors_total{kind="bad_image"}' in text
    assert "cnnkit_request_latency_seconds_bucket" in text and 'cnnkit_batch_size_count{model="digits:v1"}' in text
    assert 'cnnkit_queue_depth{model="digits:v1"}' in text


def test_openapi_documents_the_routes(client):
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(predict["requestBody"]["content"])
    assert "examples" in str(spec["components"]["schemas"]["PredictResponse"])
    assert {"/v2/models/{name}/infer", "/explain", "/metrics", "/v2/health/ready"} <= set(spec["paths"])


def test_admin_is_off_without_a_token(client):
    r = client.post("/admin/models", json={"run": "digits:v2"})
    assert r.status_code == 403 and r.json()["kind"] == "admin_off"


def test_onnx_backend_matches_torch(runs: Path, data_dir: Path, mnist):
    blobs = files(*[png(mnist.images[i, 0].numpy()) for i in range(8)])
    answers = {}
    for backend in ("torch", "onnx"):
        with TestClient(create_app(settings_for(runs, backend=backend, data_dir=str(data_dir)))) as c:
            assert c.get("/models").json()["models"][0]["backend"] == backend
            answers[backend] = c.post("/predict?top_k=10", files=blobs).json()["results"]
    for t, o in zip(answers["torch"], answers["onnx"]):
        assert t["predictions"][0]["index"] == o["predictions"][0]["index"]
        tp = {p["index"]: p["probability"] for p in t["predictions"]}
        assert all(abs(tp[p["index"]] - p["probability"]) < 1e-4 for p in o["predictions"])
    report = (runs / "digits" / "v1" / "export" / "onnx.json").read_text()
    assert '"passed": true' in report


def test_digit_photos_need_the_preprocessing(client, mnist):
    sys.path.insert(0, str(REPO))
    from benchmarks.digit_photos import make_set

    photos = list(make_set(32, mnist.images[:, 0].numpy(), mnist.labels.numpy(), seed=3))
    accuracy = {}
    for mode in ("auto", "plain"):
        right = 0
        for start in range(0, len(photos), 8):
            chunk = photos[start:start + 8]
            blobs = [png(np.asarray(img.convert("RGB")), "JPEG") for img, _, _ in chunk]
            res = client.post(f"/predict?preprocess={mode}", files=files(*blobs, kind="image/jpeg")).json()["results"]
            right += sum(r["predictions"][0]["index"] == label for r, (_, label, _) in zip(res, chunk))
        accuracy[mode] = right / len(photos)
    # A 3000-image, 1-epoch model: the absolute figure is modest; the gap is the point.
    assert accuracy["auto"] >= 0.45 and accuracy["auto"] >= accuracy["plain"] + 0.3, accuracy


# ---- a real server on 127.0.0.1 ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(runs: Path):
    """uvicorn in a thread, admin API on; yields the base URL."""
    import uvicorn

    app = create_app(settings_for(runs, max_wait_ms=5.0, admin_token=TOKEN))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url
    srv.should_exit = True
    thread.join(timeout=15)


def test_tritonclient_infer(server: str, mnist):
    import tritonclient.http as th

    client = th.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    assert client.is_model_ready("digits", "1")
    meta = client.get_model_metadata("digits")
    assert meta["inputs"][0]["shape"] == [-1, 1, 28, 28] and "1" in meta["versions"]
    assert client.get_server_metadata()["name"] == "cnnkit"
    labels = mnist.labels[:4].tolist()
    pixels = mnist.images[:4].numpy()

    inp = th.InferInput("input", list(pixels.shape), "UINT8")
    inp.set_data_from_numpy(pixels)  # binary tensor extension (the client's default)
    res = client.infer("digits", [inp])
    probs = res.as_numpy("probabilities")
    assert probs.shape == (4, 10) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert (probs.argmax(1) == labels).sum() >= 3

    inp = th.InferInput("input", list(pixels.shape), "FP32")
    inp.set_data_from_numpy((pixels / 255.0).astype(np.float32), binary_data=False)
    out = [th.InferRequestedOutput("probabilities", binary_data=False), th.InferRequestedOutput("label")]
    res = client.infer("digits", [inp], model_version="1", outputs=out)
    assert np.allclose(res.as_numpy("probabilities"), probs, atol=1e-5)
    assert [s.decode() for s in res.as_numpy("label")] == [str(int(i)) for i in probs.argmax(1)]

    blobs = np.array([png(mnist.images[i, 0].numpy()) for i in range(4)], dtype=np.object_)
    inp = th.InferInput("image", [4], "BYTES")
    inp.set_data_from_numpy(blobs)
    res = client.infer("digits", [inp], request_compression_algorithm="gzip")
    assert (res.as_numpy("probabilities").argmax(1) == labels).sum() >= 3

    with pytest.raises(th.InferenceServerException, match="does not match"):
        bad = th.InferInput("input", [1, 1, 32, 32], "UINT8")
        bad.set_data_from_numpy(np.zeros((1, 1, 32, 32), np.uint8))
        client.infer("digits", [bad])
    with pytest.raises(th.InferenceServerException, match="INT32"):
        bad = th.InferInput("input", [1, 1, 28, 28], "INT32")
        bad.set_data_from_numpy(np.zeros((1, 1, 28, 28), np.int32))
        client.infer("digits", [bad])


def test_schemathesis_finds_no_server_errors(server: str, tmp_path: Path):
    """Property-based requests from /openapi.json: no 5xx, responses match the documented schemas."""
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server}/openapi.json", "--checks", "all",
         # Valid-by-schema bytes are not valid images, so "schema-valid request rejected" cannot hold here.
         "--exclude-checks", "positive_data_acceptance", "--max-examples", "12", "--seed", "7", "--no-color",
         "--request-timeout", "20"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its .schemathesis cache goes there
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "Server error" not in proc.stdout and "not_a_server_error" not in proc.stdout


def test_hot_swap_under_load_fails_no_request(server: str, mnist):
    blob = png(mnist.images[0, 0].numpy())
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{server}/admin/models", json={"run": "digits:v2"}).status_code == 401
    assert httpx.post(f"{server}/admin/models", json={"run": "digits:v2"}, headers={"authorization": "Bearer no"}).status_code == 401
    stop = threading.Event()
    seen: list[tuple[int, int | None]] = []

    def hammer() -> None:
        with httpx.Client(base_url=server, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/predict", files=files(blob))
                seen.append((r.status_code, r.json().get("version")))

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(hammer)
        time.sleep(0.5)
        r = httpx.post(f"{server}/admin/models", json={"run": "digits:v2"}, headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 2 and r.json()["current"]
        time.sleep(0.5)
        r = httpx.delete(f"{server}/admin/models/digits/versions/1", headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        time.sleep(0.5)
        stop.set()
    statuses = {s for s, _ in seen}
    versions = [v for _, v in seen]
    assert statuses == {200}, statuses
    assert 1 in versions and versions[-1] == 2 and len(seen) > 20
    assert httpx.post(f"{server}/models/digits/versions/1/predict", files=files(blob)).status_code == 404
    r = httpx.delete(f"{server}/admin/models/digits/versions/2", headers=auth)
    assert r.status_code == 409 and r.json()["kind"] == "last_model"


def test_ready_means_warm(client):
    """Every version answering is warm: each batch shape ran before /v2/health/ready said yes."""
    assert client.get("/v2/health/ready").json() == {"ready": True}
    models = client.app.state.registry.models()
    assert models and all(m.warm_s is not None and m.warm_s > 0 for m in models)
