"""A Keras run end to end on real MNIST: the run folder, --resume, and everything downstream
(load, eval, predict, explain, compare, ONNX export) on it."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from cnnkit.config import Config

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
    pytest.skip("the keras extra is not installed", allow_module_level=True)

pytestmark = pytest.mark.slow


class Killed(Exception):
    pass


def _cfg(data_dir, runs_dir, **train):
    return Config.from_dict({
        "data": {"data_dir": str(data_dir), "limit": 1500},
        "model": {"name": "cnn", "kwargs": {"width": 8}},
        "train": {"framework": "keras", "epochs": 3, "batch_size": 64, "progress": False, "eval_batch_size": 512, **train},
        "run": {"runs_dir": str(runs_dir), "name": "k"},
    })


@pytest.fixture(scope="module")
def keras_run(data_dir, tmp_path_factory):
    """Train 3 epochs, killed after the second; resume; return the finished run."""
    from cnnkit.training.run import train_run

    runs_dir = tmp_path_factory.mktemp("runs")

    def kill(epoch, metrics):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_run(_cfg(data_dir, runs_dir), callbacks=[kill])
    outcome = train_run(_cfg(data_dir, runs_dir), resume="k:v1")
    return outcome, runs_dir


def test_a_keras_run_is_a_normal_run_folder(keras_run):
    outcome, _ = keras_run
    run = outcome.run
    assert run.ref == "k:v1" and run.status()["state"] == "finished"
    assert run.load_config()["train"]["framework"] == "keras"
    assert run.read("model.json")["framework"] == "keras"
    assert run.file("model.keras").is_file() and not run.file("model.safetensors").is_file()
    assert run.file("checkpoints/last-keras.safetensors").is_file()
    env = run.read("env.json")
    assert env["framework"] == "keras" and env["tensorflow"].startswith("2.")
    assert run.read("data.json")["checksum"]
    history = run.read("history.json")
    # The resumed run kept epoch 1 (from the checkpoint) and trained epochs 2 and 3 (epoch 2 once more,
    # since the kill came before its checkpoint).
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert outcome.metrics["test_accuracy"] > 0.7


def test_downstream_paths_run_the_keras_model(keras_run, data_dir):
    import cnnkit
    from cnnkit.evaluation.evaluate import evaluate_run
    from cnnkit.explain import feature_maps, filters, gradcam
    from cnnkit.models.keras.module import KerasModule

    outcome, runs_dir = keras_run
    loaded = cnnkit.load("k", runs_dir)
    assert isinstance(loaded.model, KerasModule)
    metrics = evaluate_run("k", runs_dir, data_dir=str(data_dir))
    assert metrics["accuracy"] == pytest.approx(outcome.metrics["test_accuracy"], abs=1e-6)

    predictor = cnnkit.Predictor(loaded)
    images = torch.zeros((2, 1, 28, 28), dtype=torch.uint8)
    assert predictor.probabilities(images).shape == (2, 10)

    from cnnkit.data.transforms import pipelines_for
    from cnnkit.evaluation.evaluate import run_dataset

    ds = run_dataset(loaded, data_dir=str(data_dir))
    x = pipelines_for(loaded.spec["preprocess"])[1](ds.test.images[:4])
    cam = gradcam(loaded.model, x)
    assert cam.shape == (4, 28, 28) and 0 <= cam.min() and cam.max() <= 1 and cam.max() > 0
    name, w = filters(loaded.model)
    assert name == "features.0.0" and w.shape == (8, 1, 3, 3)
    name, maps = feature_maps(loaded.model, x[:1])
    assert name == "features.0.2" and maps.shape == (1, 8, 28, 28) and maps.min() >= 0  # after the ReLU
    # Grad-CAM through tf.GradientTape equals Grad-CAM of the PyTorch twin through Captum.
    twin_cam = gradcam(loaded.model.torch_twin(), x, layer="features.6")
    assert np.abs(cam - twin_cam).max() < 1e-3


def test_onnx_export_is_checked_against_keras(keras_run, data_dir):
    import cnnkit
    from cnnkit.export.onnx import onnx_for_run

    _, runs_dir = keras_run
    loaded = cnnkit.load("k", runs_dir)
    path, report = onnx_for_run(loaded, str(data_dir))
    assert report["passed"] and report["images"] == 256 and report["max_abs_diff"] <= 1e-4
    assert path.is_file()


def test_compare_torch_against_keras_on_the_same_images(keras_run, data_dir):
    from cnnkit.evaluation.compare import compare_runs
    from cnnkit.training.run import train_run

    _, runs_dir = keras_run
    cfg = _cfg(data_dir, runs_dir, framework="torch", epochs=1)
    cfg.run.name = "t"
    train_run(cfg)
    result = compare_runs(["t", "k"], runs_dir, data_dir=str(data_dir))
    pair = result["pairs"][0]
    assert (pair["a"], pair["b"]) == ("t:v1", "k:v1") and 0.0 <= pair["p_value"] <= 1.0


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_serve_answers_predict_and_explain_for_a_keras_run(keras_run, data_dir, backend):
    pytest.importorskip("fastapi")
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from cnnkit.serve.app import create_app
    from cnnkit.serve.server import resolve_models
    from cnnkit.serve.settings import ServeSettings

    _, runs_dir = keras_run
    settings = ServeSettings(models=resolve_models(["k"], str(runs_dir)), runs_dir=str(runs_dir),
                             backend=backend, data_dir=str(data_dir))
    buf = io.BytesIO()
    Image.new("L", (28, 28), 0).save(buf, format="PNG")
    with TestClient(create_app(settings)) as client:
        r = client.post("/predict", files={"file": ("x.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
        assert len(r.json()["results"][0]["predictions"]) == 5
        r = client.post("/explain", files={"file": ("x.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
