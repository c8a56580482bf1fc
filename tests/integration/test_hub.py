"""The Hugging Face Hub folder of a real (small) MNIST run: files, config, card, loading it back;
``cnnkit push`` and ``hf://`` loading against a loopback Hub (tests/integration/fake_hub.py)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnkit.cli import main
from tests.integration.fake_hub import FakeHub

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hf_test_token"


@pytest.fixture(scope="module")
def runs(export_runs: Path) -> Path:
    return export_runs


@pytest.fixture(scope="module")
def folder(runs: Path, data_dir: Path, tmp_path_factory) -> Path:
    from cnnkit.export.hf import write_hub_folder

    return write_hub_folder("digits", tmp_path_factory.mktemp("hub") / "digits-hub", runs_dir=str(runs), data_dir=str(data_dir))


@pytest.fixture(scope="module")
def digit_pngs(data_dir: Path, tmp_path_factory) -> list[str]:
    from cnnkit.data.builtins import load_builtin

    test = load_builtin("mnist", data_dir, download=False).test
    out = tmp_path_factory.mktemp("pngs")
    paths = []
    for i in range(6):
        buf = io.BytesIO()
        Image.fromarray(test.images[i, 0].numpy()).save(buf, "PNG")
        (out / f"{i}.png").write_bytes(buf.getvalue())
        paths.append(str(out / f"{i}.png"))
    return paths


def test_folder_files_and_timm_config(folder: Path, runs: Path):
    names = {p.name for p in folder.iterdir()}
    assert names == {"model.safetensors", "config.json", "README.md", "curves.png", "confusion.png", ".gitattributes"}
    run = runs / "digits" / "v1"
    assert (folder / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    cfg = json.loads((folder / "config.json").read_text())
    spec = json.loads((run / "model.json").read_text())
    assert cfg["architecture"] == "cnn" and cfg["num_classes"] == 10 and cfg["label_names"] == spec["classes"]
    assert cfg["pretrained_cfg"]["input_size"] == [1, 28, 28] and cfg["pretrained_cfg"]["mean"] == spec["preprocess"]["mean"]
    from cnnkit.hubfolder import spec_from_config

    assert spec_from_config(cfg) == spec  # config.json alone rebuilds model.json
    assert "data_dir" not in cfg["cnnkit"]["config"]["data"] and "source" not in cfg["cnnkit"]["data"]
    attrs = (folder / ".gitattributes").read_text()
    assert "*.safetensors filter=lfs" in attrs and "*.png filter=lfs" in attrs


def test_card_parses_and_matches_cnnkit_eval(folder: Path, runs: Path, data_dir: Path, capsys):
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "cnnkit" and card.data.pipeline_tag == "image-classification"
    assert card.data.license and card.data.datasets == ["ylecun/mnist"] and "cnnkit" in card.data.tags
    assert main(["eval", "digits", "--runs-dir", str(runs), "--data-dir", str(data_dir), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["accuracy"].metric_value == evaluated["accuracy"]
    assert results["f1"].metric_value == evaluated["results"]["clean"]["macro_f1"]
    assert all(r.dataset_split == "test" and r.dataset_name == "MNIST" for r in results.values())
    for text in ("![training curves](curves.png)", "![confusion matrix", evaluated["data_checksum"], "## Intended use",
                 "centre by centre of mass", "```yaml"):
        assert text in card.text


def test_folder_loads_back_with_identical_predictions(folder: Path, runs: Path, data_dir: Path):
    import cnnkit
    from cnnkit.export.onnx import check_images

    original, back = cnnkit.load("digits", str(runs)), cnnkit.load(str(folder))
    assert back.spec == original.spec and back.classes == original.classes
    x = cnnkit.Predictor(original).pipeline(check_images(original, str(data_dir), 200))
    with torch.inference_mode():
        assert torch.equal(original.model(x), back.model(x))
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    from cnnkit.evaluation.evaluate import evaluate_full

    assert evaluate_full(str(folder), data_dir=str(data_dir), limit=500)["run"] == str(folder)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # caches went elsewhere


def test_predict_accepts_the_folder(folder: Path, runs: Path, digit_pngs, capsys):
    assert main(["predict", "digits", *digit_pngs, "--runs-dir", str(runs), "--json"]) == 0
    from_run = json.loads(capsys.readouterr().out)
    assert main(["predict", str(folder), *digit_pngs, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == from_run


def test_not_a_hub_folder_is_one_line(tmp_path: Path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
    assert main(["predict", str(tmp_path), "x.png"]) == 2
    err = capsys.readouterr().err
    assert "not a cnnkit Hub folder" in err and len(err.strip().splitlines()) == 1


def test_export_hf_out_replaces_only_hub_folders(runs: Path, data_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "elsewhere"
    args = ["export", "digits", "--format", "hf", "--out", str(out), "--runs-dir", str(runs), "--data-dir", str(data_dir), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["out"] == str(out) and set(report["files"]) == {p.name for p in out.iterdir()}
    assert main(args) == 0 and json.loads(capsys.readouterr().out)["cached"]
    other = tmp_path / "not-empty"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(args[:5] + [str(other)] + args[6:]) == 2
    assert "not a cnnkit Hub folder" in capsys.readouterr().err and (other / "notes.txt").read_text() == "mine"


# ---- push and hf:// against the loopback Hub -------------------------------------------------

def cnnkit_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnkit", *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def hub_env(url: str, tmp_path: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
            "CNNKIT_DATA": str(data_dir), "CNNKIT_CACHE": str(tmp_path / "cnnkit-cache"), "OMP_NUM_THREADS": "2",
            "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


def test_push_uploads_every_file_and_loads_back(runs: Path, data_dir: Path, tmp_path: Path, digit_pngs):
    with FakeHub(tokens={TOKEN}) as hub:
        env = hub_env(hub.url, tmp_path, data_dir, HF_TOKEN=TOKEN)
        proc = cnnkit_cli(env, "push", "digits", "me/digits", "--runs-dir", str(runs), "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads(proc.stdout)
        stored = hub.state.files("me/digits")
        assert set(stored) == set(result["files"]) >= {"model.safetensors", "config.json", "README.md", ".gitattributes"}
        assert {p: hashlib.sha256(b).hexdigest() for p, b in stored.items()} == result["files"]
        repo = hub.state.repos["me/digits"]
        lfs = repo.lfs_paths[repo.branches["main"]]
        assert lfs == {"model.safetensors", "curves.png", "confusion.png"}
        assert hub.state.lfs[result["files"]["model.safetensors"]] == stored["model.safetensors"]
        writes = [e for e in hub.state.log if e["method"] == "POST"]
        assert {"/api/repos/create", "/api/models/me/digits/commit/main"} <= {e["path"] for e in writes}
        assert all(e["auth"] == f"Bearer {TOKEN}" for e in writes if e["path"] != "/api/validate-yaml")
        assert sum(e["path"].endswith("/commit/main") for e in writes) == 1  # one commit

        # hf:// downloads it into huggingface_hub's cache and predicts exactly as the run does
        hf_pred = cnnkit_cli(env, "predict", "hf://me/digits", *digit_pngs, "--json")
        assert hf_pred.returncode == 0, hf_pred.stderr[-2000:]
    # ... and later from the cache alone, offline
    offline = cnnkit_cli({**env, "HF_HUB_OFFLINE": "1"}, "predict", "hf://me/digits", *digit_pngs, "--json")
    assert offline.returncode == 0, offline.stderr[-2000:]
    assert json.loads(offline.stdout) == json.loads(hf_pred.stdout)


@pytest.mark.slow
def test_predictions_through_hf_equal_the_runs(runs: Path, digit_pngs, capsys, tmp_path: Path, data_dir: Path):
    with FakeHub(tokens={TOKEN}) as hub:
        env = hub_env(hub.url, tmp_path, data_dir, HF_TOKEN=TOKEN)
        assert cnnkit_cli(env, "push", "digits", "me/digits", "--runs-dir", str(runs), "--revision", "v1").returncode == 0
        assert set(hub.state.repos["me/digits"].branches) == {"main", "v1"}
        hf_pred = cnnkit_cli(env, "predict", "hf://me/digits@v1", *digit_pngs, "--json")
    assert hf_pred.returncode == 0, hf_pred.stderr[-2000:]
    assert main(["predict", "digits", *digit_pngs, "--runs-dir", str(runs), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert [r["predictions"] for r in json.loads(hf_pred.stdout)] == [r["predictions"] for r in ours]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_push_refusals_are_one_line(runs: Path, data_dir: Path, tmp_path: Path):
    with FakeHub(tokens={TOKEN}, missing={"nobody"}) as hub:
        bad = cnnkit_cli(hub_env(hub.url, tmp_path, data_dir, HF_TOKEN="wrong"), "push", "digits", "me/x", "--runs-dir", str(runs))
        missing = cnnkit_cli(hub_env(hub.url, tmp_path, data_dir, HF_TOKEN=TOKEN), "push", "digits", "nobody/x",
                             "--runs-dir", str(runs))
        assert not hub.state.repos
    down = cnnkit_cli(hub_env(f"http://127.0.0.1:{_closed_port()}", tmp_path, data_dir, HF_TOKEN=TOKEN), "push", "digits",
                      "me/x", "--runs-dir", str(runs))
    not_cached = cnnkit_cli(hub_env(f"http://127.0.0.1:{_closed_port()}", tmp_path, data_dir, HF_HUB_OFFLINE="1"),
                            "predict", "hf://me/never", "x.png")
    for proc, words in ((bad, "401"), (missing, "404"), (down, "cannot reach the Hub"), (not_cached, "not in the local")):
        assert proc.returncode == 2, (words, proc.stderr[-2000:])
        assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]


def test_hf_ref_must_name_a_repo(capsys):
    assert main(["predict", "hf://just-a-name", "x.png"]) == 2
    assert "hf://OWNER/REPO" in capsys.readouterr().err

