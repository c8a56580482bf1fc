"""The README's story through the real CLI: train -> runs -> eval -> predict, and bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import as_json

QUICK = ("--limit", "1500", "--epochs", "1", "--batch-size", "64", "--no-progress", "--eval-batch-size", "2000")


def _mnist_pngs(data_dir: Path, out: Path, n: int = 3) -> tuple[list[str], list[int]]:
    from cnnkit.data.builtins import load_builtin

    ds = load_builtin("mnist", data_dir, download=False)
    paths = []
    for i in range(n):
        p = out / f"digit{i}.png"
        Image.fromarray(ds.test.images[i, 0].numpy()).save(p)
        paths.append(str(p))
    return paths, ds.test.labels[:n].tolist()


def test_train_list_show_eval_predict(cli, data_dir: Path, tmp_path: Path):
    out = as_json(cli("train", "--model", "baseline-cnn", *QUICK, "--json"))
    assert out["run"] == "mnist-baseline-cnn:v1" and 0.5 < out["test_accuracy"] <= 1
    second = as_json(cli("train", "--model", "baseline-cnn", *QUICK, "--json", "--seed", "1"))
    assert second["run"] == "mnist-baseline-cnn:v2"

    runs = as_json(cli("runs", "list", "--json"))
    assert [(r["name"], r["version"]) for r in runs] == [("mnist-baseline-cnn", 1), ("mnist-baseline-cnn", 2)]
    assert {"name", "version", "created", "model", "data", "metrics"} <= set(runs[0])
    assert runs[0]["model"] == "baseline-cnn" and runs[0]["data"] == "mnist"
    shown = as_json(cli("runs", "show", "mnist-baseline-cnn:v1", "--json"))
    assert shown["data_record"]["checksum"] and shown["env"]["torch"] and len(shown["history"]) == 1

    ev = as_json(cli("eval", "mnist-baseline-cnn:v1", "--json"))
    assert ev["run"] == "mnist-baseline-cnn:v1" and ev["accuracy"] == pytest.approx(out["test_accuracy"], abs=1e-6)
    assert 0 <= ev["accuracy"] <= 1 and ev["loss"] > 0

    paths, labels = _mnist_pngs(data_dir, tmp_path)
    preds = as_json(cli("predict", "mnist-baseline-cnn", *paths, "--top-k", "3", "--json"))
    assert len(preds) == 3
    for p in preds:
        probs = [q["probability"] for q in p["predictions"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
        assert set(p["predictions"][0]) == {"index", "label", "probability"}
    assert sum(p["predictions"][0]["index"] == y for p, y in zip(preds, labels)) >= 2
    plain = as_json(cli("predict", "mnist-baseline-cnn", *paths, "--no-digits", "--json"))
    # MNIST images are already what the photo preprocessing produces: both paths agree on them.
    assert [p["predictions"][0]["index"] for p in plain] == [p["predictions"][0]["index"] for p in preds]


def test_python_api_loads_a_run(cli, tmp_path: Path):
    import cnnkit

    cli("train", "--model", "lenet5", *QUICK)
    loaded = cnnkit.load("mnist-lenet5:v1", runs_dir=str(tmp_path / "runs"))
    import torch

    assert loaded.model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert loaded.classes == [str(i) for i in range(10)] and loaded.spec["preprocess"]["kind"] == "digits"


def _no_runs(cli) -> bool:
    runs = Path(cli.runs)
    return not runs.exists() or not any(p.name.startswith("v") for p in runs.rglob("v*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (("train", "--model", "nope"), "unknown model 'nope'"),
        (("train", "--data", "./no/such/folder"), "does not exist"),
        (("train", "--data", "imagenet-1k"), "does not exist"),
        (("train", "--epochs", "many"), "train.epochs must be an integer"),
        (("train", "--optimizer", "lbfgs"), "train.optimizer must be one of"),
        (("train", "--config", "missing.yaml"), "config file not found"),
        (("train", "--frobnicate"), "unrecognized arguments"),
        (("eval", "ghost"), "no run named 'ghost'"),
        (("predict", "ghost:v3", "x.png"), "no run named 'ghost'"),
        (("train", "--resume", "ghost"), "no run named 'ghost'"),
        (("runs", "show", "ghost"), "no run named 'ghost'"),
        (("data", "check", "./nothing-here"), "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, args, message):
    proc = cli(*args, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _no_runs(cli)


def test_corrupt_image_and_finished_resume_are_refused(cli, tmp_path: Path):
    cli("train", "--model", "baseline-cnn", *QUICK)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    proc = cli("predict", "mnist-baseline-cnn", str(bad), check=False)
    assert proc.returncode == 2 and "bad.png" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("train", "--resume", "mnist-baseline-cnn", check=False)
    assert proc.returncode == 2 and "already finished" in proc.stderr
    assert [p.name for p in (Path(cli.runs) / "mnist-baseline-cnn").iterdir()] == ["v1"]


def test_data_check_reports_a_folder(cli, tmp_path: Path):
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    report = as_json(cli("data", "check", str(root), "--json", check=False))
    assert report["classes"] == ["a", "b"]
    assert any("broken.jpg" in str(f) for f in report["bad_files"])


def test_models_lists_the_registry(cli):
    from cnnkit.models import model_names

    rows = as_json(cli("models", "--json"))
    assert [r["name"] for r in rows] == model_names()
    assert {"baseline-cnn", "cnn", "lenet5", "alexnet", "vgg11", "vgg16", "googlenet", "resnet18", "resnet34", "resnet50"} <= {
        r["name"] for r in rows}


def test_help_of_every_verb(cli):
    top = cli("--help").stdout
    for verb in ("train", "eval", "predict", "runs", "data", "models"):
        assert verb in top
        assert "usage: cnnkit " + verb in cli(verb, "--help").stdout
