"""Kill -9 during epoch 3, ``--resume``: the run completes, with exactly the uninterrupted metrics."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import as_json

pytestmark = pytest.mark.slow  # a minute or so: trains runs, starts servers or browsers

ARGS = ("--model", "lenet5", "--limit", "4000", "--epochs", "4", "--batch-size", "64", "--deterministic",
        "--seed", "3", "--no-progress", "--ema", "0.9")


def _wait_for_epoch(status: Path, epoch: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended before epoch {epoch}: {proc.stderr.read()[-2000:]}")
        try:
            if json.loads(status.read_text()).get("epoch", 0) >= epoch:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("timed out waiting for a checkpoint")


def test_kill_9_mid_epoch_then_resume_matches_uninterrupted(cli, tmp_path: Path):
    full = as_json(cli("train", *ARGS, "--name", "full", "--json"))

    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "train", *ARGS, "--name", "killed"], env=cli.env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = Path(cli.runs) / "killed" / "v1"
    _wait_for_epoch(run / "status.json", 2, proc)  # two epochs checkpointed: we are inside epoch 3
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert json.loads((run / "status.json").read_text())["state"] == "running"
    assert not (run / "model.safetensors").exists()

    resumed = as_json(cli("train", "--resume", "killed", "--json"))
    assert resumed["run"] == "killed:v1"
    assert resumed["test_accuracy"] == full["test_accuracy"] and resumed["test_loss"] == full["test_loss"]
    history_full = json.loads((Path(cli.runs) / "full" / "v1" / "history.json").read_text())
    history_resumed = json.loads((run / "history.json").read_text())
    assert [h["val_loss"] for h in history_full] == [h["val_loss"] for h in history_resumed]
