"""``cnnkit export``: ONNX, INT8 ONNX and pt2 exports of a real (small) MNIST run, their checks,
reports and reuse, ``serve --backend onnx-int8``, and the one-line refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.export.formats import export_run
from cnnkit.export.quantize import gate


@pytest.fixture(scope="module")
def runs(export_runs: Path) -> Path:
    return export_runs


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_onnx_export_is_checked_reported_and_reused(runs: Path, data_dir: Path, tmp_path: Path, capsys):
    code, out, _ = cli(capsys, "export", "digits", "--format", "onnx", "--runs-dir", str(runs), "--data-dir", str(data_dir),
                       "--out", str(tmp_path / "deploy"), "--json")
    first = json.loads(out)
    assert code == 0 and first["format"] == "onnx" and first["opset"] >= 17 and first["images"] == 256
    assert first["argmax_agreement"] == 1.0 and first["max_abs_diff"] <= 1e-4
    copied = tmp_path / "deploy" / "model.onnx"
    assert copied.read_bytes() == Path(first["path"]).read_bytes()
    stored = json.loads((runs / "digits" / "v1" / "export" / "onnx.json").read_text())
    assert stored["weights_sha256"] == first["weights_sha256"] and stored["sha256"] == first["sha256"]
    mtime = Path(first["path"]).stat().st_mtime_ns

    again = export_run("digits", "onnx", runs_dir=str(runs), data_dir=str(data_dir))
    assert again["cached"] and Path(again["path"]).stat().st_mtime_ns == mtime


def test_changed_weights_are_exported_again(runs: Path, data_dir: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "runs"
    shutil.copytree(runs / "digits", copy / "digits")
    before = export_run("digits", "onnx", runs_dir=str(copy), data_dir=str(data_dir))
    run = copy / "digits" / "v1"
    from safetensors.torch import load_file, save_file

    weights = load_file(str(run / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.dtype.is_floating_point and v.dim() == 4)
    weights[name] = weights[name] * 1.01
    save_file(weights, str(run / "model.safetensors"))
    after = export_run("digits", "onnx", runs_dir=str(copy), data_dir=str(data_dir))
    assert not after["cached"] and after["weights_sha256"] != before["weights_sha256"]
    assert after["sha256"] != before["sha256"]


def test_pt2_loads_without_cnnkit_and_matches_eager(runs: Path, data_dir: Path, tmp_path: Path):
    import cnnkit
    from cnnkit.data.transforms import pipelines_for
    from cnnkit.export.onnx import check_images

    report = export_run("digits", "pt2", runs_dir=str(runs), data_dir=str(data_dir))
    assert report["format"] == "pt2" and report["argmax_agreement"] == 1.0 and report["max_abs_diff"] <= 1e-4
    loaded = cnnkit.load("digits", str(runs))
    x = pipelines_for(loaded.spec["preprocess"])[1](check_images(loaded, str(data_dir), 37))
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.inference_mode():
        np.save(tmp_path / "eager.npy", loaded.model(x).numpy())
    # A fresh interpreter with only torch: the program must stand alone, at a batch size never traced.
    code = ("import sys, numpy as np, torch\n"
            f"m = torch.export.load({report['path']!r}).module()\n"
            f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
            "out = m(x).detach().numpy()\n"
            f"eager = np.load({str(tmp_path / 'eager.npy')!r})\n"
            "assert 'cnnkit' not in sys.modules\n"
            "print(float(np.abs(out - eager).max()), (out.argmax(1) == eager.argmax(1)).all())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    diff, same = proc.stdout.split()
    assert float(diff) <= 1e-4 and same == "True"


def test_int8_export_reports_both_models_on_the_full_test_set(runs: Path, data_dir: Path, capsys):
    code, out, _ = cli(capsys, "export", "digits", "--format", "onnx", "--quantize", "int8", "--runs-dir", str(runs),
                       "--data-dir", str(data_dir), "--json")
    r = json.loads(out)
    assert code == 0 and r["format"] == "onnx-int8" and r["test_images"] == 10000
    assert r["quantization"]["format"] == "QDQ" and r["quantization"]["per_channel"]
    assert r["quantization"]["calibration_images"] == 512
    assert len(r["quantization"]["float_nodes"]) == 1  # the conv that reads the 1-channel image
    assert r["int8"]["bytes"] < 0.5 * r["fp32"]["bytes"] and r["int8"]["bytes"] == Path(r["path"]).stat().st_size
    assert r["fp32"]["accuracy"] > 0.85 and r["accuracy_drop_points"] <= 0.5
    assert r["fp32"]["images_per_s"] > 0 and r["int8"]["images_per_s"] > 0
    import onnx

    ops = {n.op_type for n in onnx.load(r["path"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The gate is applied to the stored figures on reuse: a limit below the measured loss refuses.
    if r["accuracy_drop_points"] > 0:
        code, out, err = cli(capsys, "export", "digits", "--format", "onnx", "--quantize", "int8", "--max-drop", "0",
                             "--runs-dir", str(runs), "--data-dir", str(data_dir))
        assert code == 2 and "loses" in err and "--force" in err and len(err.strip().splitlines()) == 1


def test_int8_gate_refuses_beyond_max_drop():
    figures = {"accuracy_drop_points": 0.7, "fp32": {"accuracy": 0.99}, "int8": {"accuracy": 0.983}}
    with pytest.raises(CnnkitError, match="loses 0.70 points"):
        gate("digits:v1", figures, 0.5, force=False)
    gate("digits:v1", figures, 0.5, force=True)
    gate("digits:v1", figures, 1.0, force=False)


def test_serve_onnx_int8_backend(runs: Path, data_dir: Path):
    from fastapi.testclient import TestClient

    from cnnkit.data.builtins import load_builtin
    from cnnkit.serve.app import create_app
    from cnnkit.serve.server import resolve_models
    from cnnkit.serve.settings import ServeSettings

    test = load_builtin("mnist", data_dir, download=False).test
    images = test.images[:64, 0].numpy()
    settings = ServeSettings(models=resolve_models(["digits"], str(runs)), runs_dir=str(runs), backend="onnx-int8",
                             data_dir=str(data_dir), digits="off")
    with TestClient(create_app(settings)) as c:
        assert c.get("/models").json()["models"][0]["backend"] == "onnx-int8"
        body = {"inputs": [{"name": "input", "shape": [64, 1, 28, 28], "datatype": "UINT8", "data": images.reshape(-1).tolist()}]}
        r = c.post("/v2/models/digits/infer", json=body)
        assert r.status_code == 200, r.text
        probs = np.array(next(o for o in r.json()["outputs"] if o["name"] == "probabilities")["data"]).reshape(64, 10)
    right = (probs.argmax(1) == test.labels[:64].numpy()).mean()
    assert right > 0.8


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite"], "unknown export format 'tflite'"),
    (["--format", "pt2", "--quantize", "int8"], "not available for --format pt2"),
    (["--format", "onnx", "--force"], "apply to --quantize int8 only"),
])
def test_bad_export_requests_are_one_line(runs: Path, capsys, args, message):
    code, _, err = cli(capsys, "export", "digits", "--runs-dir", str(runs), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_run_without_weights_is_refused(runs: Path, tmp_path: Path, capsys):
    import shutil

    copy = tmp_path / "runs"
    shutil.copytree(runs / "digits", copy / "pruned", ignore=shutil.ignore_patterns("export", "eval"))
    (copy / "pruned" / "v1" / "model.safetensors").unlink()
    code, _, err = cli(capsys, "export", "pruned", "--format", "onnx", "--runs-dir", str(copy))
    assert code == 2 and "has no weights" in err and len(err.strip().splitlines()) == 1
    assert not (copy / "pruned" / "v1" / "export").exists()
