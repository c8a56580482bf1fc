"""The web page at /, in headless Chromium (Debian's, via Playwright): draw, upload, read the answer.

The server is the real CLI (``cnnkit serve``) in a subprocess, as the README tells users to run it.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx  # noqa: E402 - dev extras: a missing one must fail the run, not skip it
import pytest
from PIL import Image
from playwright import sync_api  # noqa: E402

pytestmark = pytest.mark.slow  # a minute or so: trains runs, starts servers or browsers

CHROMIUM = os.environ.get("CNNKIT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]



@pytest.fixture(scope="module", autouse=True)
def _chromium_present() -> None:
    # Fail, not skip: CI installs it (.ci/chromium.sh), and a silent skip would hide a broken page.
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"{CHROMIUM} not found: run .ci/chromium.sh (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, data_dir: Path):
    """Train a quick MNIST run with the CLI, then ``cnnkit serve`` it; yields the base URL."""
    root = tmp_path_factory.mktemp("web")
    env = {**os.environ, "CNNKIT_DATA": str(data_dir), "CNNKIT_RUNS": str(root / "runs"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "cnnkit", "train", "--model", "cnn", "--limit", "3000", "--epochs", "1",
                    "--batch-size", "64", "--no-progress", "--name", "digits"], env=env, cwd=root, check=True,
                   capture_output=True, timeout=300)
    port = free_port()
    log = open(root / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", "digits", "--port", str(port)], env=env, cwd=root,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"cnnkit serve did not start:\n{(root / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def page(served: str):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    args=ARGS, headless=True)
        page = browser.new_page()
        # The page must work offline: any request that leaves this server fails the test.
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(served) or r.url.startswith("data:") else outside.append(r.url))
        page.goto(served + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        yield page
        assert not outside, f"the page fetched from outside the server: {outside}"
        browser.close()


def read_prediction(page) -> tuple[str, list[str]]:
    page.wait_for_function("document.querySelector('#top-label').textContent.length > 0", timeout=15000)
    page.wait_for_function("document.querySelector('#cam').src.startsWith('data:image/png')", timeout=20000)
    labels = page.locator("#bars .label").all_text_contents()
    return page.locator("#top-label").text_content(), labels


def test_draw_a_digit(page):
    assert page.locator("#model option").count() == 1
    box = page.locator("#canvas").bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    # A "1": one vertical stroke down the middle.
    page.mouse.move(x0 + w * 0.5, y0 + h * 0.15)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x0 + w * 0.5, y0 + h * (0.15 + 0.07 * i))
    page.mouse.up()
    top, labels = read_prediction(page)
    assert len(labels) == 5 and top == labels[0]
    assert top == "1"
    assert page.locator("#seen").get_attribute("src").startswith("data:image/png")
    assert "center-of-mass" in page.locator("#steps").text_content()
    page.click("#clear")
    assert page.locator("#top-label").text_content() == ""


def test_upload_a_file(page, served: str, data_dir: Path, tmp_path: Path):
    from cnnkit.data.builtins import load_builtin

    test = load_builtin("mnist", data_dir, download=False).test
    # An MNIST digit as it would look on paper: dark ink on white, larger, off-centre.
    paper = Image.new("L", (160, 120), 255)
    paper.paste(Image.fromarray(255 - test.images[0, 0].numpy()).resize((84, 84)), (60, 20))
    path = tmp_path / "photo.png"
    paper.save(path)
    expected = httpx.post(f"{served}/predict", files={"file": ("p.png", path.read_bytes(), "image/png")}).json()
    page.click("#clear")
    page.set_input_files("#file", str(path))
    top, _ = read_prediction(page)
    assert top == expected["results"][0]["predictions"][0]["label"] == str(int(test.labels[0]))
    assert "invert" in page.locator("#steps").text_content()
