"""Prediction logs and drift alerts on a real MNIST run, through the real HTTP API (TestClient)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import fastapi  # noqa: F401 - dev extra: missing must fail, not skip
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit.serve.app import create_app
from cnnkit.serve.server import resolve_models
from cnnkit.serve.settings import Monitoring, ServeSettings

pytestmark = pytest.mark.slow  # trains a run (about a minute on 2 cores)
WINDOW = 300


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir: Path) -> Path:
    import cnnkit

    root = tmp_path_factory.mktemp("monitor-runs")
    cnnkit.train(data={"name": "mnist", "data_dir": str(data_dir), "limit": 6000},
                 model={"name": "cnn"}, train={"epochs": 2, "batch_size": 64, "progress": False, "threads": 1},
                 run={"name": "digits", "runs_dir": str(root)})
    return root


@pytest.fixture(scope="module")
def tests(data_dir: Path):
    from cnnkit.data.builtins import load_builtin

    return (load_builtin("mnist", data_dir, download=False).test.images[:, 0].numpy(),
            load_builtin("fashion-mnist", data_dir, download=False).test.images[:, 0].numpy())


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def send(client: TestClient, images: np.ndarray, query: str = "") -> None:
    for start in range(0, len(images), 8):
        files = [("file", (f"{i}.png", png(a), "image/png")) for i, a in enumerate(images[start:start + 8])]
        r = client.post(f"/predict{query}", files=files)
        assert r.status_code == 200, r.text


def drift(client: TestClient) -> tuple[float, dict[str, float]]:
    alert, scores = None, {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("cnnkit_drift_alert{"):
            alert = float(line.rsplit(" ", 1)[1])
        elif line.startswith("cnnkit_drift_score{"):
            scores[line.split('statistic="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return alert, scores


def app(runs: Path, **monitoring) -> TestClient:
    settings = ServeSettings(models=resolve_models(["digits"], str(runs)), runs_dir=str(runs),
                             monitoring=Monitoring(drift_window=WINDOW, **monitoring))
    return TestClient(create_app(settings))


def test_training_stores_reference(runs: Path):
    ref = json.loads((runs / "digits" / "v1" / "reference.json").read_text())
    assert ref["split"] == "val" and ref["count"] == 5000 and ref["method"] == "psi"
    assert set(ref["statistics"]) == {"confidence", "brightness", "contrast", "edges"}
    for stat in ref["statistics"].values():
        assert len(stat["shares"]) == len(stat["edges"]) + 1 and abs(sum(stat["shares"]) - 1) < 1e-4
    assert len(ref["class_prior"]) == 10 and abs(sum(ref["class_prior"]) - 1) < 1e-4


def test_clean_mnist_keeps_the_alert_off_and_fashion_turns_it_on(runs: Path, tests, caplog):
    mnist, fashion = tests
    with app(runs) as client, caplog.at_level("WARNING", logger="cnnkit.serve"):
        send(client, mnist[:WINDOW])
        alert, scores = drift(client)
        assert alert == 0 and max(scores.values()) < 0.2, scores
        send(client, fashion[:WINDOW])  # within one window of Fashion-MNIST the alert is on
        alert, scores = drift(client)
        assert alert == 1, scores
        assert any("drift alert ON for digits:v1" in r.message for r in caplog.records)
        send(client, mnist[WINDOW:3 * WINDOW])  # clean again: it turns off, and says so
        assert drift(client)[0] == 0
        assert any("drift alert off for digits:v1" in r.message for r in caplog.records)


@pytest.mark.parametrize("change", ["noise", "inverted"])
def test_noisy_or_inverted_digits_turn_it_on(runs: Path, tests, change: str):
    mnist = tests[0][:WINDOW].astype(np.float32)
    if change == "noise":
        rng = np.random.default_rng(0)
        images, query = np.clip(mnist + rng.normal(0, 60, mnist.shape), 0, 255).astype(np.uint8), ""
    else:
        # The digit preprocessing would invert them back (the model then sees ordinary digits, and
        # there is no drift to report); without it, the model sees white paper.
        images, query = (255 - mnist).astype(np.uint8), "?preprocess=plain"
    with app(runs) as client:
        send(client, images, query)
        alert, scores = drift(client)
    assert alert == 1, scores


def test_prediction_log_lines(runs: Path, tests, tmp_path: Path):
    log = tmp_path / "log"
    with app(runs, log_dir=str(log), log_inputs=True) as client:
        send(client, tests[0][:40])
        r = client.post("/explain", files=[("file", ("x.png", png(tests[0][0]), "image/png"))])
        assert r.status_code == 200
    # The server is shut down: every line is on disk (written by the log's thread).
    lines = [json.loads(line) for f in sorted(log.glob("predictions-*.jsonl")) for line in f.read_text().splitlines()]
    assert len(lines) == 41
    first = lines[0]
    assert first["model"] == "digits" and first["version"] == 1 and first["route"] == "predict"
    assert len(first["top_k"]) == 5 and first["confidence"] == first["top_k"][0]["probability"]
    assert first["input_shape"] == [1, 28, 28] and first["input_bytes"] == len(png(tests[0][0]))
    assert "center-of-mass" in first["preprocessing"] or first["preprocessing"]
    thumb = Image.open(io.BytesIO(__import__("base64").b64decode(first["thumbnail"])))
    assert thumb.size == (28, 28)
    assert lines[-1]["route"] == "explain" and lines[-1]["sha256"] == first["sha256"]  # the same image


def _logged(runs: Path, folder: Path, *batches: np.ndarray) -> Path:
    with app(runs, log_dir=str(folder), log_inputs=True) as client:
        for images in batches:
            send(client, images)
    return folder


def test_monitor_page_replays_the_servers_drift(runs: Path, tests, tmp_path: Path, capsys):
    from cnnkit.cli import main

    mnist, fashion = tests
    clean = _logged(runs, tmp_path / "clean", mnist[:2 * WINDOW])
    shifted = _logged(runs, tmp_path / "shifted", mnist[:WINDOW], fashion[:WINDOW])
    pages = {}
    for name, folder in (("clean", clean), ("shifted", shifted)):
        assert main(["monitor", str(folder), "--run", "digits", "--runs-dir", str(runs), "--drift-window", str(WINDOW),
                     "--json"]) == 0
        pages[name] = json.loads(capsys.readouterr().out)
    assert pages["clean"]["images"] == 2 * WINDOW and pages["clean"]["windows_scored"] > 0
    assert pages["clean"]["windows_alerting"] == 0 and max(pages["clean"]["max_psi"].values()) < 0.25
    assert pages["shifted"]["windows_alerting"] > 0 and pages["shifted"]["alert_now"]
    assert max(pages["shifted"]["max_psi"].values()) >= 0.25
    page = Path(pages["shifted"]["report"]).read_text()
    for section in ("Drift over time", "Predicted classes", "Low-confidence answers", "Least confident inputs"):
        assert section in page
    assert page.count("data:image/png;base64,") >= 3 + 24 and "<script" not in page and "http" not in page.split("<body")[1]


def test_monitor_refusals_are_one_line(runs: Path, tmp_path: Path, capsys):
    from cnnkit.cli import main

    (tmp_path / "empty").mkdir()
    no_ref = runs / "digits" / "v1"
    cases = [([str(tmp_path / "nowhere")], "no such log folder"), ([str(tmp_path / "empty")], "no prediction log lines")]
    for argv, words in cases:
        assert main(["monitor", *argv, "--run", "digits", "--runs-dir", str(runs)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err
    log = tmp_path / "log"
    log.mkdir()
    (log / "predictions-1-1-0.jsonl").write_text(json.dumps({"model": "digits", "version": 1, "time": 1.0}) + "\n")
    moved = no_ref / "reference.json.bak"
    (no_ref / "reference.json").rename(moved)
    try:
        assert main(["monitor", str(log), "--run", "digits", "--runs-dir", str(runs)]) == 2
        assert "has no reference.json" in capsys.readouterr().err
    finally:
        moved.rename(no_ref / "reference.json")
