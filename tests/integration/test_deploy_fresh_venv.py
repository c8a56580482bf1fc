"""The strongest check of the Python bundles: a fresh virtual environment holding only the bundles'
pinned requirements (no cnnkit, no torch) runs each entry point on real test images and gets what
``cnnkit predict`` gets. One environment serves the cerebrium and hf-endpoint bundles (their requirements are the
same pins); watsonx's score_local.py gets its own, with the ONNX Runtime of the watsonx.ai software
specification (1.16.3). pip reuses its wheel cache, so each environment costs about 20 seconds.
A CIFAR-10 run covers the RGB, non-digit path of the bundle's preprocessing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.export.deploy import deploy
from tests.integration.test_deploy import CEREBRIUM, HANDLER

pytestmark = pytest.mark.slow


def _train(name: str, data: str, data_dir: Path, runs: Path, **model_kwargs) -> None:
    import cnnkit

    cnnkit.train(data={"name": data, "data_dir": str(data_dir), "limit": 2000}, model={"name": "cnn", "kwargs": model_kwargs},
                 train={"epochs": 1, "batch_size": 64, "progress": False, "threads": 1}, run={"name": name, "runs_dir": str(runs)})


def _test_images(data: str, data_dir: Path, folder: Path, idx: tuple[int, ...]) -> list[Path]:
    from cnnkit.data.builtins import load_builtin

    test = load_builtin(data, data_dir, download=False).test
    paths = []
    for i in idx:
        arr = test.images[i].numpy()
        img = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
        paths.append(folder / f"{data}-{i}.png")
        img.save(paths[-1])
    return paths


def _digit_photos(data_dir: Path, folder: Path, n: int) -> list[Path]:
    """Photo-like digits (tinted paper, uneven light, JPEG): the whole photo preprocessing, SciPy included."""
    from benchmarks.digit_photos import make_set
    from cnnkit.data.builtins import load_builtin

    test = load_builtin("mnist", data_dir, download=False).test
    paths = []
    for i, (img, _, _) in enumerate(make_set(n, test.images[:, 0].numpy(), test.labels.numpy(), seed=5)):
        paths.append(folder / f"photo-{i}.jpg")
        img.convert("RGB").save(paths[-1], quality=90)
    return paths


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("fresh")
    runs = root / "runs"
    _train("digits", "mnist", data_dir, runs)
    _train("photos", "cifar10", data_dir, runs, width=8)
    images = {"digits": _test_images("mnist", data_dir, root, (200, 201, 202, 203)) + _digit_photos(data_dir, root, 4),
              "photos": _test_images("cifar10", data_dir, root, (10, 11, 12, 13))}
    environ = {**os.environ, "CNNKIT_RUNS": str(runs), "CNNKIT_DATA": str(data_dir)}
    expected = {}
    for run, paths in images.items():
        proc = subprocess.run([sys.executable, "-m", "cnnkit", "predict", run, *map(str, paths), "--top-k", "3", "--json"],
                              env=environ, capture_output=True, text=True, check=True, cwd=root)
        expected[run] = json.loads(proc.stdout)
    bundles = {(run, target): root / "bundles" / f"{run}-{target}"
               for run, target in (("digits", "cerebrium"), ("digits", "hf-endpoint"), ("digits", "watsonx"), ("photos", "cerebrium"))}
    for (run, target), out in bundles.items():
        deploy(run, target, out, runs_dir=str(runs), data_dir=str(data_dir))
    reqs = (bundles["digits", "cerebrium"] / "requirements.txt").read_text().split()
    py = make_venv(root / "venv", bundles["digits", "cerebrium"] / "requirements.txt")
    return {"root": root, "images": images, "expected": expected, "bundles": bundles, "python": py, "reqs": reqs,
            "raw_onnx": runs / "digits" / "v1" / "export" / "model.onnx"}


def make_venv(path: Path, requirements: Path) -> Path:
    """A new virtual environment (no system site-packages) with ``requirements`` installed; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    py = path / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(requirements)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return py


def in_venv(world: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The fresh environment's interpreter, isolated (-I: no PYTHONPATH, no user site, no cwd on the path)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(world["python"]), "-I", *args], cwd=cwd or world["root"], env=environ, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def same_as_predict(expected: list[dict], got: list[list[dict]]) -> None:
    for want, preds in zip(expected, got, strict=True):
        assert [p["label"] for p in preds[:3]] == [p["label"] for p in want["predictions"]], want["image"]
        assert np.allclose([p["probability"] for p in preds[:3]], [p["probability"] for p in want["predictions"]], atol=1e-4)


def test_the_environment_has_only_the_bundle_requirements(world: dict):
    for (_, target), bundle in world["bundles"].items():
        if target != "watsonx":  # its requirements are the service's runtime (below)
            assert set((bundle / "requirements.txt").read_text().split()) <= set(world["reqs"]), target
    proc = in_venv(world, "-c", "import importlib.util as u, json; print(json.dumps([bool(u.find_spec(m)) for m in "
                                "('cnnkit', 'torch', 'onnxruntime', 'PIL', 'numpy')]))")
    assert json.loads(proc.stdout) == [False, False, True, True, True]


def test_cerebrium_main_in_a_fresh_venv(world: dict):
    for run in ("digits", "photos"):
        proc = in_venv(world, "-c", CEREBRIUM, str(world["bundles"][run, "cerebrium"]), *map(str, world["images"][run]))
        out = json.loads(proc.stdout)
        same_as_predict(world["expected"][run], [body["results"][0]["predictions"] for body in out["out"]])
        steps = [body["results"][0]["preprocessing"] for body in out["out"]]
        if run == "photos":
            assert steps == [["resize-32x32"]] * len(steps)
        else:  # MNIST test images take the MNIST-format shortcut; the photos go through the whole recipe
            assert steps[:4] == [["mnist-format"]] * 4
            assert all("center-of-mass" in st for st in steps[4:]) and any("remove-background" in st for st in steps[4:])


def test_hf_endpoint_handler_in_a_fresh_venv(world: dict):
    proc = in_venv(world, "-c", HANDLER, str(world["bundles"]["digits", "hf-endpoint"]), *map(str, world["images"]["digits"]))
    out = json.loads(proc.stdout)
    same_as_predict(world["expected"]["digits"], [[{"label": p["label"], "probability": p["score"]} for p in r] for r in out["out"]])


def test_watsonx_score_local_in_the_service_runtime(world: dict, tmp_path: Path):
    """watsonx's onnxruntime_opset_19 runs ONNX Runtime 1.16: the bundle's requirements.txt pins it."""
    bundle = world["bundles"]["digits", "watsonx"]
    assert (bundle / "requirements.txt").read_text().split() == ["onnxruntime==1.16.3", "numpy==1.26.4"]
    venv = {**world, "python": make_venv(tmp_path / "venv-ort116", bundle / "requirements.txt")}
    scored = json.loads(in_venv(venv, "score_local.py", "--labels", cwd=bundle).stdout)
    expected = json.loads((bundle / "payload_expected.json").read_text())
    assert scored["labels"] == expected and len(expected) == 8
    # The exporter's own file (IR 10) is what that runtime refuses; the bundle's (IR 9) is the same graph.
    raw = subprocess.run([str(venv["python"]), "-I", "score_local.py", "--model", str(world["raw_onnx"])], cwd=bundle,
                         capture_output=True, text=True, timeout=120)
    assert raw.returncode != 0 and "IR version" in raw.stderr
