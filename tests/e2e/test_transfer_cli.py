"""The small-data workflow through the real CLI: DICOM folder -> run -> recall-first rule saved
-> predict says which rule decided; --init from that run with a channel change, lineage shown;
bad --init / --freeze refused in one line with nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import as_json

pytest.importorskip("pydicom")
from tests.unit.test_dicom import dicom_bytes  # noqa: E402

pytestmark = pytest.mark.slow


def _dicom_folder(root: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for name, level in (("normal", 900), ("disease", 2600)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = np.clip(rng.normal(level, 700, (20, 20)), 0, 4095)
            (root / name / f"{i}.dcm").write_bytes(dicom_bytes(img, center=2000, width=4000))
    return root


def test_dicom_rule_init_lineage_and_refusals(cli, tmp_path: Path) -> None:
    data = _dicom_folder(tmp_path / "xray")
    common = ("--image-size", "16", "--epochs", "2", "--batch-size", "8", "--no-progress", "--val-fraction", "0.25")
    cli("train", "--data", str(data), "--name", "xr", *common)

    out = as_json(cli("eval", "xr", "--target-recall", "disease=0.95", "--save-rule", "--json"))
    assert out["rule"]["chosen_on"] == "val" and out["rule"]["val"]["recall"] >= 0.95
    assert set(out["test"]) >= {"precision", "recall"}
    assert (cli.runs / "xr" / "v1" / "decision_rule.json").is_file()

    pred = as_json(cli("predict", "xr", str(data / "disease" / "3.dcm"), "--json"))
    assert pred[0]["decision"]["rule"].startswith("target-recall disease>=0.95")

    proc = cli("train", "--data", str(data), "--channels", "3", "--init", "xr", "--name", "kid", "--freeze", "2",
               "--unfreeze-at", "2", *common)
    assert "tensors copied (1 adapted" in proc.stdout
    init = json.loads((cli.runs / "kid" / "v1" / "init.json").read_text())
    assert init["parent"]["ref"] == "xr:v1" and len(init["parent"]["checksum"]) == 64
    assert "lineage: kid:v1 <- xr:v1" in cli("runs", "show", "kid").stdout

    before = sorted(p.name for p in cli.runs.iterdir())
    for bad, message in ((("--init", "nope"), "no run named 'nope'"), (("--init", "xr", "--freeze", "9"), "--freeze 9"),
                         (("--model", "resnet18", "--init", "xr"), "shares no tensor")):
        proc = cli("train", "--data", str(data), "--name", "bad", *bad, *common, check=False)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(p.name for p in cli.runs.iterdir()) == before  # nothing written


def test_served_answers_name_the_rule(cli, tmp_path: Path) -> None:
    from cnnkit.predict import Predictor

    data = _dicom_folder(tmp_path / "xray", n=10)
    cli("train", "--data", str(data), "--name", "s", "--image-size", "16", "--epochs", "1", "--batch-size", "8", "--no-progress")
    predictor = Predictor.from_run("s", cli.runs)
    probs = np.array([0.3, 0.7])
    assert predictor.decide(probs)["rule"] == "argmax"
    (cli.runs / "s" / "v1" / "decision_rule.json").write_text(json.dumps(
        {"kind": "target-recall", "class": predictor.classes[0], "index": 0, "target_recall": 0.95, "threshold": 0.2}))
    ruled = Predictor.from_run("s", cli.runs).decide(probs)
    assert ruled["label"] == predictor.classes[0] and ruled["rule"].startswith("target-recall")
    # DICOM bytes, as an upload reaches the server
    upload = (data / predictor.classes[0] / "1.dcm").read_bytes()
    assert predictor.to_uint8(upload).shape == (1, 16, 16)
