"""``--track mlflow`` against a real MLflow tracking server started here on 127.0.0.1 (a free port,
a SQLite backend and a local artifact root in a temporary folder), read back with MlflowClient;
and with nobody listening, training still finishes. Needs the full ``mlflow`` (the dev extra).
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnnkit.cli import main
from tests.unit.test_tune_objective import tiny_digits

pytestmark = pytest.mark.slow  # starts a server and trains runs: about a minute in all

TRAIN = ["train", "--data", "mnist", "--limit", "500", "--epochs", "2", "--batch-size", "64", "--model-kwargs", "width=8",
         "--no-progress", "--threads", "2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer within {seconds}s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("mlflow-server")
    port, log = _free_port(), base / "server.log"
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if exe is None:
        pytest.fail("the mlflow command is missing: pip install -e '.[dev]' (full mlflow, not mlflow-skinny)")
    cmd = [exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}", "--artifacts-destination", str(base / "artifacts")]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture
def quick_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """Data from the shared folder; MLflow's HTTP retry settings restored after each test."""
    monkeypatch.setenv("CNNKIT_DATA", str(data_dir))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "cnnkit-tests")


def test_train_is_mirrored_and_registered(server: str, runs_dir: Path, quick_env: None, capsys: pytest.CaptureFixture):
    from mlflow import MlflowClient

    code = main([*TRAIN, "--runs-dir", str(runs_dir), "--name", "digits", "--lr", "0.05", "--track", "mlflow",
                 "--tracking-uri", server, "--register", "cnnkit-digits", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    record = result["mlflow"]
    assert record["state"] == "mirrored", record
    run_folder = Path(result["path"])
    assert json.loads((run_folder / "status.json").read_text())["mlflow"]["run_id"] == record["run_id"]

    client = MlflowClient(tracking_uri=server)
    mrun = client.get_run(record["run_id"])
    assert mrun.info.status == "FINISHED" and mrun.info.run_name == "digits:v1"
    params = mrun.data.params
    assert params["train.lr"] == "0.05" and params["data.limit"] == "500" and params["model.kwargs.width"] == "8"
    assert params["run.track"] == "mlflow"
    data = json.loads((run_folder / "data.json").read_text())
    env = json.loads((run_folder / "env.json").read_text())
    assert mrun.data.tags["cnnkit.data_checksum"] == data["checksum"]
    assert mrun.data.tags["mlflow.source.git.commit"] == (env["git_commit"] or "")
    assert mrun.data.tags["cnnkit.run"] == "digits:v1"

    history = json.loads((run_folder / "history.json").read_text())
    for key in ("train_loss", "val_accuracy", "lr"):
        logged = client.get_metric_history(record["run_id"], key)
        assert [m.step for m in logged] == [1, 2]
        assert [m.value for m in logged] == pytest.approx([h[key] for h in history])
    metrics = json.loads((run_folder / "metrics.json").read_text())
    assert mrun.data.metrics["final.test_accuracy"] == pytest.approx(metrics["test_accuracy"])

    artifacts = {a.path for a in client.list_artifacts(record["run_id"], "run")}
    for name in ("model.safetensors", "model.json", "config.yaml", "metrics.json", "data.json", "history.json"):
        assert f"run/{name}" in artifacts
    local = Path(client.download_artifacts(record["run_id"], "run/model.safetensors", str(runs_dir.parent / "dl")))
    assert local.read_bytes() == (run_folder / "model.safetensors").read_bytes()

    version = client.get_model_version("cnnkit-digits", str(record["registered"]["version"]))
    assert version.run_id == record["run_id"] and version.source.endswith("/run")
    assert "registered as cnnkit-digits" not in out.err  # the summary goes to stdout, warnings to stderr

    # A second training registers version 2 of the same name.
    assert main([*TRAIN, "--epochs", "1", "--runs-dir", str(runs_dir), "--name", "digits", "--track", "mlflow",
                 "--tracking-uri", server, "--register", "cnnkit-digits"]) == 0
    assert "registered as cnnkit-digits version 2" in capsys.readouterr().out
    assert len(client.search_model_versions("name='cnnkit-digits'")) == 2


def test_server_down_training_still_finishes(runs_dir: Path, quick_env: None, capsys: pytest.CaptureFixture):
    dead = f"http://127.0.0.1:{_free_port()}"  # nobody listens there
    code = main([*TRAIN, "--epochs", "1", "--runs-dir", str(runs_dir), "--name", "offline", "--track", "mlflow",
                 "--tracking-uri", dead, "--register", "x"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.err.count("cnnkit: warning: MLflow") == 1, out.err  # warned once, not per epoch
    assert "cannot reach the tracking server" in out.err
    assert "NOT fully mirrored" in out.out
    status = json.loads((runs_dir / "offline" / "v1" / "status.json").read_text())
    assert status["state"] == "finished" and status["mlflow"]["state"] == "incomplete"
    assert (runs_dir / "offline" / "v1" / "model.safetensors").is_file()


def test_tune_trials_nest_under_the_study(server: str, data_dir: Path, runs_dir: Path, quick_env: None,
                                          tmp_path: Path, capsys: pytest.CaptureFixture):
    from mlflow import MlflowClient

    digits = tiny_digits(data_dir, tmp_path / "digits")
    code = main(["tune", "--data", str(digits), "--image-size", "28", "--model", "baseline-cnn", "--epochs", "1",
                 "--study", "nested", "--trials", "2", "--runs-dir", str(runs_dir), "--no-progress", "--threads", "2",
                 "--track", "mlflow", "--tracking-uri", server, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    parent = json.loads(out.out)["mlflow"]
    assert parent["state"] == "mirrored", parent
    client = MlflowClient(tracking_uri=server)
    study_run = client.get_run(parent["run_id"])
    assert study_run.info.run_name == "nested" and study_run.info.status == "FINISHED"
    children = client.search_runs([study_run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent['run_id']}'")
    assert sorted(r.info.run_name for r in children) == ["nested-t0:v1", "nested-t1:v1"]
    for child in children:
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")] == [1]
