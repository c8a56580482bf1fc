"""End-to-end helpers: run the real ``cnnkit`` CLI in a subprocess, as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def cli(tmp_path: Path, data_dir: Path):
    """``cli("train", "--epochs", "1")`` -> CompletedProcess; runs under tmp_path/runs, data from shared."""
    env = {**os.environ, "CNNKIT_DATA": str(data_dir), "CNNKIT_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "2"}

    def run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "cnnkit", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"cnnkit {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return proc

    run.env = env
    run.runs = tmp_path / "runs"
    return run


def as_json(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout)
