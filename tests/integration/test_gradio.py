"""The Gradio app (issue 16), tested the way Gradio tests itself: a real server on 127.0.0.1 called with
``gradio_client``, on real MNIST test images and a drawn digit, its answers checked against the JSON
API and the Predictor; one headless-Chromium pass; and nothing may leave 127.0.0.1 meanwhile.

One module-scoped server (``cnnkit serve --ui gradio``'s app, in a thread) serves the run twice, as
``digits`` and ``other``, so the model picker has a choice.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import gradio  # noqa: F401 - dev extra: missing must fail, not skip
import httpx
import numpy as np
import pytest
import uvicorn
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

from cnnkit.serve.app import create_app
from cnnkit.serve.predlog import read_lines
from cnnkit.serve.server import resolve_models
from cnnkit.serve.settings import Limits, Monitoring, ServeSettings

MAX_PIXELS = 1_000_000  # small, so that a too-large upload is cheap to make
LOCAL = ("127.0.0.1", "::1", "localhost")
# Launch options as in tests/e2e/test_web_page.py: Debian's Chromium, kept off the network.
CHROMIUM = os.environ.get("CNNKIT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def outside():
    """Every connection or name lookup this process makes to anything but loopback (Gradio's analytics,
    version checks, fonts or CDN files would show up here)."""
    seen: list[str] = []
    connect, connect_ex, lookup = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def check(address) -> None:
        if isinstance(address, tuple) and str(address[0]) not in LOCAL:
            seen.append(str(address))

    def guarded_connect(self, address):
        check(address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        check(address)
        return connect_ex(self, address)

    def guarded_lookup(host, *args, **kw):
        if host is not None and str(host) not in LOCAL:
            seen.append(f"lookup {host}")
        return lookup(host, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded_connect)
        mp.setattr(socket.socket, "connect_ex", guarded_connect_ex)
        mp.setattr(socket, "getaddrinfo", guarded_lookup)
        # The test's own gradio_client announces itself to huggingface.co (send_telemetry, which honours
        # this switch); that is the harness, not cnnkit. The server's analytics call huggingface_hub's
        # _send_telemetry_in_thread directly, which ignores it, so the server is still checked.
        from huggingface_hub import constants

        mp.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        yield seen


@contextlib.contextmanager
def running(settings: ServeSettings):
    """The app on a real uvicorn in a thread; yields the base URL once every model is warm."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    try:
        deadline = time.time() + 60
        while not server.started or httpx.get(f"{url}/v2/health/ready", timeout=2).status_code != 200:
            assert thread.is_alive() and time.time() < deadline, "the server did not start"
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def served(outside, export_runs: Path, tmp_path_factory):
    """(base URL, log folder): ``digits:v1`` and ``other=digits:v1`` with the Gradio app at /gradio."""
    logs = tmp_path_factory.mktemp("gradio-logs")
    settings = ServeSettings(models=resolve_models(["digits:v1", "other=digits:v1"], str(export_runs)),
                             runs_dir=str(export_runs), port=free_port(), limits=Limits(max_pixels=MAX_PIXELS),
                             monitoring=Monitoring(log_dir=str(logs), drift=False), gradio_path="/gradio")
    with running(settings) as url:
        yield url, logs


@pytest.fixture(scope="module")
def client(served):
    return Client(f"{served[0]}/gradio/", verbose=False)


@pytest.fixture(scope="module")
def mnist(data_dir: Path):
    from cnnkit.data.builtins import load_builtin

    return load_builtin("mnist", data_dir, download=False).test


def png(image: Image.Image | np.ndarray) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, "PNG")
    return buf.getvalue()


def as_file(tmp_path: Path, blob: bytes, name: str = "image.png") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def json_predict(url: str, blob: bytes, model: str = "digits") -> dict:
    r = httpx.post(f"{url}/models/{model}/predict", files={"file": ("i.png", blob, "image/png")}, timeout=30)
    return r.json()


def drawn(digit: str) -> bytes:
    """A sketchpad-style drawing: black ink on a transparent 280x280 canvas, as Gradio's Sketchpad makes."""
    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    pen = ImageDraw.Draw(canvas)
    strokes = {"1": [(140, 40), (140, 240)], "7": [(70, 50), (210, 50), (120, 240)]}[digit]
    pen.line(strokes, fill=(0, 0, 0, 255), width=22, joint="curve")
    return png(canvas)


def labels(answer: dict) -> list[tuple[str, float]]:
    return [(c["label"], c["confidence"]) for c in answer["confidences"]]


def test_mnist_images_answer_as_the_json_api_and_the_predictor(served, client, mnist, export_runs, tmp_path):
    from cnnkit.predict import Predictor

    predictor = Predictor.from_run("digits:v1", export_runs)
    for i in range(6):
        blob = png(mnist.images[i, 0].numpy())
        label, seen, cam, steps = client.predict("digits:v1", handle_file(str(as_file(tmp_path, blob))), api_name="/explain")
        expected = json_predict(served[0], blob)["results"][0]
        want = [(p["label"], p["probability"]) for p in expected["predictions"]]
        assert label["label"] == want[0][0] == predictor.predict([blob], 1)[0][0].label
        assert [n for n, _ in labels(label)] == [n for n, _ in want]
        assert np.allclose([p for _, p in labels(label)], [p for _, p in want], atol=1e-5)
        # The image shown is exactly what the model saw: the Predictor's own preprocessing.
        assert np.array_equal(np.asarray(Image.open(seen)), predictor.prepare(blob).array[0])
        assert Image.open(cam).size == (224, 224)
        assert steps == "digits:v1 · " + " → ".join(expected["preprocessing"])
    right = sum(int(client.predict("digits:v1", handle_file(str(as_file(tmp_path, png(mnist.images[i, 0].numpy())))),
                                   api_name="/explain")[0]["label"]) == int(mnist.labels[i]) for i in range(6, 16))
    assert right >= 7, f"{right}/10 MNIST test digits right"


@pytest.mark.parametrize("digit", ["1", "7"])
def test_a_drawn_digit(served, client, tmp_path, digit):
    blob = drawn(digit)
    sketch = {"background": None, "layers": [], "composite": handle_file(str(as_file(tmp_path, blob)))}
    label, seen, _, steps = client.predict("digits:v1", sketch, api_name="/sketch")
    expected = json_predict(served[0], blob)["results"][0]
    assert label["label"] == expected["predictions"][0]["label"]
    assert "invert" in steps and steps.endswith(" → ".join(expected["preprocessing"]))
    if digit == "1":  # a plain vertical stroke: even a one-epoch model knows it
        assert label["label"] == "1"
    empty = as_file(tmp_path, png(Image.new("RGBA", (280, 280), (0, 0, 0, 0))), "empty.png")
    blank = {"background": None, "layers": [], "composite": handle_file(str(empty))}
    assert client.predict("digits:v1", blank, api_name="/sketch")[3] == ""  # a cleared canvas: nothing, not an error


def test_the_model_picker(client, mnist, tmp_path):
    path = handle_file(str(as_file(tmp_path, png(mnist.images[0, 0].numpy()))))
    assert client.predict("other:v1", path, api_name="/explain")[3].startswith("other:v1 · ")
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio's Dropdown refuses it first
        client.predict("nope:v1", path, api_name="/explain")


def test_refused_uploads_get_the_json_api_errors(served, client, tmp_path):
    big = png(np.zeros((1001, 1001), np.uint8))  # 1,002,001 pixels > MAX_PIXELS: refused before decoding
    for blob in (big, b"not an image at all", png(np.zeros((8, 8), np.uint8))[:40]):
        r = httpx.post(f"{served[0]}/predict", files={"file": ("i.png", blob, "image/png")})
        assert r.status_code in (413, 422)
        with pytest.raises(AppError) as caught:
            client.predict("digits:v1", handle_file(str(as_file(tmp_path, blob))), api_name="/explain")
        assert str(caught.value.message) == r.json()["error"]
    assert "pixels" in httpx.post(f"{served[0]}/predict", files={"file": ("i.png", big, "image/png")}).json()["error"]


def test_answers_are_logged_like_the_json_apis(served, client, mnist, tmp_path):
    blob = png(mnist.images[3, 0].numpy())
    client.predict("other:v1", handle_file(str(as_file(tmp_path, blob))), api_name="/explain")
    deadline = time.time() + 5
    while not (lines := [x for x in read_lines(served[1]) if x["model"] == "other"]) and time.time() < deadline:
        time.sleep(0.05)
    assert lines and lines[-1]["route"] == "explain" and lines[-1]["input_bytes"] == len(blob)


def test_the_page_in_chromium(served, mnist, tmp_path):
    """Renders, draws a '1', answers an upload as the JSON API does; every request stays on the server."""
    from playwright import sync_api

    url = served[0]
    blob = png(mnist.images[1, 0].numpy())
    expected = json_predict(url, blob)["results"][0]["predictions"][0]["label"]
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{url}/gradio/")
            page.wait_for_selector("#sketch canvas", timeout=30000)
            page.locator("#sketch button[aria-label='Brush']").first.click()
            box = page.locator("#sketch canvas").first.bounding_box()
            x, y, w, h = box["x"], box["y"], box["width"], box["height"]
            page.mouse.move(x + w * 0.5, y + h * 0.15)
            page.mouse.down()
            for i in range(1, 11):
                page.mouse.move(x + w * 0.5, y + h * (0.15 + 0.07 * i))
            page.mouse.up()
            steps = page.locator("#steps textarea")
            page.wait_for_function("document.querySelector('#steps textarea').value.length > 0", timeout=20000)
            assert page.locator("#label").inner_text().split()[2] == "1"  # "top classes" then the top label
            page.get_by_role("tab", name="upload").click()
            page.locator("#upload input[type=file]").set_input_files(str(as_file(tmp_path, blob)))
            page.wait_for_function("!document.querySelector('#steps textarea').value.includes('invert')", timeout=20000)
            assert page.locator("#label").inner_text().split()[2] == expected
            assert "mnist-format" in steps.input_value()  # an MNIST test digit: nothing to do
            assert page.locator("#seen img").count() == 1 and page.locator("#cam img").count() == 1
        finally:
            browser.close()
    left = [u for u in requests if not (u.startswith(url) or u.startswith(("data:", "blob:")))]
    assert requests and not left, f"the page fetched from outside the server: {left}"


def test_cnnkit_gradio_alone_serves_the_app_at_the_root(export_runs: Path, tmp_path):
    settings = ServeSettings(models=resolve_models(["digits:v1"], str(export_runs)), runs_dir=str(export_runs),
                             port=free_port(), gradio_path="/")
    with running(settings) as url:
        assert "gradio" in httpx.get(f"{url}/").text.lower()
        blob = drawn("1")
        answer = Client(f"{url}/", verbose=False).predict(
            "digits:v1", handle_file(str(as_file(tmp_path, blob))), api_name="/explain")
        assert answer[0]["label"] == json_predict(url, blob)["results"][0]["predictions"][0]["label"]


def test_nothing_left_the_machine(served, client, outside):
    """Runs after the others in this module (pytest keeps file order): analytics, fonts, version checks."""
    assert not outside, f"connections to outside 127.0.0.1: {outside}"


@pytest.mark.parametrize("argv", [["gradio", "digits"], ["serve", "digits", "--ui", "gradio"]])
def test_without_the_extra_one_line_and_exit_2(argv, monkeypatch, capsys):
    from cnnkit.cli import main

    monkeypatch.setitem(__import__("sys").modules, "gradio", None)  # import gradio -> ImportError
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.endswith('needs gradio: pip install "cnnkit[gradio]"'), err
