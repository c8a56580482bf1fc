"""torchrun with 2 CPU processes (gloo): one run, written once, that learns."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a minute or so: trains runs, starts servers or browsers


def test_torchrun_two_processes(cli, tmp_path: Path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cnnkit", "train",
           "--model", "baseline-cnn", "--limit", "2000", "--epochs", "2", "--batch-size", "32", "--no-progress",
           "--threads", "1", "--json", "--name", "ddp"]
    proc = subprocess.run(cmd, env=cli.env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert out["run"] == "ddp:v1" and out["test_accuracy"] > 0.8
    assert sorted(p.name for p in (Path(cli.runs) / "ddp").iterdir()) == ["v1"]  # rank 1 wrote nothing
    assert json.loads((Path(cli.runs) / "ddp" / "v1" / "env.json").read_text())["world_size"] == 2
