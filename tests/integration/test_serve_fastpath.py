"""cnnkit.serve.fastpath answers POST /predict exactly as the FastAPI route does, status and bytes."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit.serve.app import create_app
from cnnkit.serve.server import resolve_models
from cnnkit.serve.settings import Limits, ServeSettings


@pytest.fixture(scope="module")
def app(tmp_path_factory, data_dir: Path):
    import cnnkit

    root = tmp_path_factory.mktemp("fastpath-runs")
    cnnkit.train(data={"name": "mnist", "data_dir": str(data_dir), "limit": 1000},
                 model={"name": "cnn"}, train={"epochs": 1, "batch_size": 64, "progress": False, "threads": 1},
                 run={"name": "digits", "runs_dir": str(root)})
    settings = ServeSettings(models=resolve_models(["digits"], str(root)), runs_dir=str(root),
                             limits=Limits(max_request_bytes=200_000, max_images=4))
    return create_app(settings)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _requests(data_dir: Path) -> list[tuple[str, dict]]:
    from cnnkit.data.builtins import load_builtin

    test = load_builtin("mnist", data_dir, download=False).test
    a, b = _png(test.images[0, 0].numpy()), _png(test.images[1, 0].numpy())
    photo = _png(np.full((60, 40), 200, np.uint8))
    file = lambda *blobs: [("file", (f"{i}.png", x, "image/png")) for i, x in enumerate(blobs)]  # noqa: E731
    return [
        ("/predict", {"files": file(a)}),
        ("/predict", {"files": file(a, b, photo)}),
        ("/predict?top_k=2&preprocess=plain", {"files": file(b)}),
        ("/predict?top_k=1000&include_input=true", {"files": file(photo)}),
        ("/predict?preprocess=digits&unknown=1", {"files": file(a)}),
        ("/predict", {"json": {"images": [base64.b64encode(a).decode()]}}),
        ("/predict", {"content": b, "headers": {"content-type": "image/png"}}),
        ("/predict", {"files": file(a, a, a, a, a)}),  # too many images
        ("/predict", {"files": file(b"junk")}),
        ("/predict", {"files": [("other", ("x.png", a, "image/png"))]}),
        ("/predict", {"files": [("file", (None, "text"))]}),
        ("/predict", {"content": b"x", "headers": {"content-type": "text/plain"}}),
        ("/predict", {"content": b"x" * 300_000, "headers": {"content-type": "image/png"}}),
        ("/predict", {"content": b"{", "headers": {"content-type": "application/json"}}),
        ("/predict", {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}}),
        ("/predict", {"content": b"", "headers": {"content-type": "image/png"}}),
    ]


def test_the_fast_path_answers_as_the_route_does(app, data_dir: Path, monkeypatch):
    taken = []
    with TestClient(app) as client:
        original = app.fast.take
        monkeypatch.setattr(app.fast, "take", lambda scope: taken.append(o := original(scope)) or o)
        for url, kwargs in _requests(data_dir):
            fast = client.post(url, **kwargs)
            fast_path, app.fast = app.fast, None
            try:
                slow = client.post(url, **kwargs)
            finally:
                app.fast = fast_path
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), url
            assert fast.headers.get("retry-after") == slow.headers.get("retry-after")
            assert fast.headers["content-type"] == slow.headers["content-type"]
    # All but the oversized body (BodyLimit's 413 on its Content-Length) went the fast way.
    assert sum(o is not None for o in taken) == len(_requests(data_dir)) - 1


@pytest.mark.parametrize("query", ["top_k=0", "top_k=x", "top_k=1001", "preprocess=fancy", "include_input=maybe",
                                   "top_k=1&top_k=2"])
def test_queries_it_cannot_read_go_to_the_route(app, data_dir: Path, query: str):
    blob = _png(np.zeros((28, 28), np.uint8))
    with TestClient(app) as client:
        assert app.fast.take({"type": "http", "path": "/predict", "method": "POST", "query_string": query.encode(),
                              "headers": [(b"content-length", b"10")]}) is None
        r = client.post(f"/predict?{query}", files=[("file", ("0.png", blob, "image/png"))])
    assert r.status_code in (200, 422)  # FastAPI validated it (a repeated name: the last value is taken)
    if r.status_code == 422:
        assert r.json()["kind"] == "validation"


def test_metrics_and_request_counts_cover_the_fast_path(app):
    blob = _png(np.zeros((28, 28), np.uint8))
    with TestClient(app) as client:
        before = app.state.requests.answered
        client.post("/predict", files=[("file", ("0.png", blob, "image/png"))])
        client.post("/predict", files=[("file", ("0.png", b"junk", "image/png"))])
        assert app.state.requests.answered == before + 2
        text = client.get("/metrics").text
    assert 'cnnkit_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'cnnkit_requests_total{method="POST",route="/predict",status="422"}' in text
    assert 'cnnkit_errors_total{kind="bad_image"}' in text
