"""Evaluation, comparison, explanation and the HTML report through the real CLI on tiny MNIST runs;
the report is opened in headless Chromium (Debian's ``chromium``, installed by ``.ci/chromium.sh``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import as_json

pytestmark = pytest.mark.slow  # a minute or so: trains runs, starts servers or browsers

QUICK = ("--limit", "1500", "--epochs", "1", "--batch-size", "64", "--no-progress", "--eval-batch-size", "2000", "--val-fraction", "0.02")
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, data_dir: Path):
    """Two tiny runs trained once for the module: the tutorial baseline and the improved CNN."""
    root = tmp_path_factory.mktemp("evalreport")
    env = {**os.environ, "CNNKIT_DATA": str(data_dir), "CNNKIT_RUNS": str(root / "runs"), "OMP_NUM_THREADS": "1"}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "cnnkit", *args], env=env, cwd=root, capture_output=True, text=True,
                              timeout=300, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"cnnkit {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return proc

    run("train", "--model", "baseline-cnn", *QUICK)
    run("train", "--model", "cnn", "--model-kwargs", "width=8", *QUICK)
    run.root = root
    run.env = env
    return run


@pytest.fixture
def inproc(cli_runs, monkeypatch, capsys):
    """The same CLI entry point in this process (no 4 s torch start-up): for the quick refusals."""
    from cnnkit.cli import main

    for key in ("CNNKIT_DATA", "CNNKIT_RUNS"):
        monkeypatch.setenv(key, cli_runs.env[key])

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_training_stores_curves_and_a_diagnosis(cli_runs):
    folder = cli_runs.root / "runs" / "mnist-baseline-cnn" / "v1"
    assert (folder / "curves.png").read_bytes()[:4] == b"\x89PNG"
    diagnosis = json.loads((folder / "diagnosis.json").read_text())
    assert diagnosis["verdict"] == "too short to judge" and "1 epoch" in diagnosis["sentence"]


def test_eval_full_metrics_variants_tta_and_cache(cli_runs):
    args = ("eval", "mnist-baseline-cnn", "--variants", "clean,noise,rotate:20", "--tta", "--limit", "800",
            "--bootstrap", "200", "--json")
    out = as_json(cli_runs(*args))
    assert {"run", "accuracy", "loss", "split", "data", "images"} <= set(out) and out["images"] == 800
    assert list(out["results"]) == ["clean", "clean+tta", "noise", "noise+tta", "rotate-20", "rotate-20+tta"]
    clean = out["results"]["clean"]
    lo, hi = clean["accuracy_ci"]
    assert lo <= clean["accuracy"] <= hi and out["accuracy"] == clean["accuracy"]
    assert len(clean["per_class"]) == 10 and np.asarray(clean["confusion"]).sum() == 800
    assert out["results"]["rotate-20"]["accuracy"] < clean["accuracy"]
    stored = Path(out["stored_in"])
    saved = json.loads((stored / "clean.json").read_text())
    with np.load(stored / "clean.npz") as z:
        assert (z["log_probs"].argmax(1) == z["labels"]).mean() == pytest.approx(clean["accuracy"])
    before = (stored / "clean.json").stat().st_mtime_ns
    again = as_json(cli_runs(*args))
    assert again["results"]["clean"] == saved["metrics"] and (stored / "clean.json").stat().st_mtime_ns == before


def test_eval_prints_one_table_per_variant(inproc):
    code, text, _ = inproc("eval", "mnist-baseline-cnn", "--variants", "clean,noise", "--limit", "300", "--bootstrap", "50")
    assert code == 0 and text.count("macro avg") == 2 and "[noise]" in text and "vs clean" in text


def test_runs_compare_pairs_with_exact_mcnemar(cli_runs):
    from scipy.stats import binomtest

    out = as_json(cli_runs("runs", "compare", "mnist-baseline-cnn", "mnist-cnn", "--limit", "800", "--bootstrap", "100",
                           "--variants", "clean,blur", "--json"))
    assert [r["run"] for r in out["runs"]] == ["mnist-baseline-cnn:v1", "mnist-cnn:v1"] and out["images"] == 800
    assert [p["variant"] for p in out["pairs"]] == ["clean", "blur"]
    for p in out["pairs"]:
        n = p["a_only_right"] + p["b_only_right"]
        ref = 1.0 if n == 0 else binomtest(min(p["a_only_right"], p["b_only_right"]), n, 0.5).pvalue
        assert p["p_value"] == pytest.approx(ref, rel=1e-9)
        assert p["both_right"] + p["both_wrong"] + n == 800 and "McNemar" in p["verdict"]
    per_class = out["per_class"]["clean"]
    assert len(per_class) == 10 and all(row["f1_delta"][0] == 0 for row in per_class)


def test_explain_writes_pngs_and_summaries(cli_runs, tmp_path: Path):
    odd = tmp_path / "odd.jpg"  # wrong size and channels: converted as the run's preprocessing says
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(odd)
    out = as_json(cli_runs("explain", "mnist-cnn", "--filters", "--feature-maps", "test:0", "--gradcam", "test:0",
                           str(odd), "--target", "3", "--errors", "--top", "8", "--out", str(tmp_path / "x"), "--json"))
    names = sorted(Path(f).name for f in out["files"])
    assert names == ["errors-confused-pairs.png", "errors-top-losses.png", "feature-maps-test-0-features.0.png",
                     "filters-features.0.0.png", "gradcam.png"]
    assert all(Path(f).read_bytes()[:4] == b"\x89PNG" for f in out["files"])
    assert out["filters"]["shape"] == [8, 1, 3, 3] and out["feature_maps"]["shape"][0] == 8
    assert [g["target"] for g in out["gradcam"]] == ["3", "3"] and out["gradcam"][1]["image"] == "odd.jpg"
    assert {"peak", "mean", "mass_in_top_10pct"} <= set(out["gradcam"][0]["gradcam"])
    assert len(out["errors"]["top_losses"]) == 8


def test_bad_input_in_a_subprocess_is_one_line_exit_2(cli_runs):
    proc = cli_runs("explain", "mnist-cnn", "--feature-maps", "test:0", "features.99", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "no layer 'features.99'" in lines[0] and "features.6" in lines[0]


def test_bad_input_is_one_line_exit_2(inproc, tmp_path: Path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    cases = [
        (("explain", "mnist-cnn", "--gradcam", str(junk)), "junk.png", "not a PNG"),
        (("explain", "mnist-cnn", "--filters", "head.3"), "no conv layer 'head.3'", "features.0.0"),
        (("explain", "mnist-cnn", "--gradcam", "test:99999"), "test split has 10000 images", ""),
        (("explain", "mnist-cnn", "--gradcam", "test:0", "--target", "cat"), "unknown target class 'cat'", "0, 1, 2"),
        (("explain", "mnist-cnn"), "nothing to explain", ""),
        (("eval", "mnist-cnn", "--variants", "fog"), "unknown variant 'fog'", "noise"),
        (("runs", "compare", "mnist-cnn"), "at least two runs", ""),
        (("report", "no-such-run"), "no run named 'no-such-run'", "mnist-cnn"),
    ]
    for args, message, also in cases:
        code, _, err = inproc(*args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0] and also in lines[0], (args, err)


def test_a_run_without_test_data_says_so(inproc, tmp_path: Path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "shapes" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / "shapes" / cls / f"{i}.png")
    code, _, err = inproc("train", "--data", str(tmp_path / "shapes"), "--test-fraction", "0", "--val-fraction", "0.2",
                          "--model", "baseline-cnn", "--epochs", "1", "--batch-size", "4", "--no-progress", "--name", "notest")
    assert code == 0, err
    for verb in ("eval", "report"):
        code, _, err = inproc(verb, "notest")
        assert code == 2 and "has no test split" in err and len(err.strip().splitlines()) == 1


def test_report_renders_in_headless_chromium(cli_runs, tmp_path: Path):
    import playwright.sync_api  # noqa: F401 - dev extra: missing must fail, not skip
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run .ci/chromium.sh (apt-get install chromium)")
    page_file = tmp_path / "report.html"
    info = as_json(cli_runs("report", "mnist-cnn", "--limit", "600", "--examples", "4", "--out", str(page_file), "--json"))
    assert info["path"] == str(page_file) and info["images"] >= 9
    html = page_file.read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
            cards = page.inner_text(".cards")
        finally:
            browser.close()
    assert errors == []
    assert len(images) == info["images"] and all(done and width > 0 for _, done, width in images), images
    for title in ("Training curves", "Metrics", "Confusion matrix", "Robustness", "Misclassified", "What the model looks at",
                  "filters", "dataset doctor", "Config and environment"):
        assert any(title in h for h in headings), (title, headings)
    assert "TEST ACCURACY" in cards.upper() and "95% CI" in cards
