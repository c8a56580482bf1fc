"""Runs saved by an earlier cnnkit still load, predict the same, and work with every reading verb.

``tests/data/runs-0.1.0`` holds a run that cnnkit 0.1.0 trained (commit f80ee5a, before the package
was regrouped) and the logits that version gave on the first 32 MNIST test images.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.data.builtins import load_builtin
from cnnkit.data.transforms import pipelines_for

OLD = Path(__file__).resolve().parents[1] / "data" / "runs-0.1.0"


@pytest.fixture
def old_runs(tmp_path: Path) -> Path:
    """A copy: the reading verbs cache their results in the run folder."""
    shutil.copytree(OLD, tmp_path / "runs", ignore=shutil.ignore_patterns("expected.json"))
    return tmp_path / "runs"


def test_an_old_run_gives_the_logits_it_gave_then(old_runs: Path, data_dir: Path):
    expected = torch.tensor(json.loads((OLD / "expected.json").read_text())["logits"])
    run = cnnkit.load("mnist-cnn:v1", runs_dir=str(old_runs))
    _, pipe = pipelines_for(run.spec["preprocess"])
    with torch.no_grad():
        logits = run.model(pipe(load_builtin("mnist", data_dir).test.images[:32]))
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_the_reading_verbs_accept_an_old_run(old_runs: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]):
    common = ["--runs-dir", str(old_runs)]
    assert main(["runs", "show", "mnist-cnn", *common]) == 0
    assert main(["eval", "mnist-cnn", *common, "--data-dir", str(data_dir), "--limit", "200", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{\n"):])  # after the text of runs show
    assert report["run"] == "mnist-cnn:v1" and 0.0 <= report["accuracy"] <= 1.0
