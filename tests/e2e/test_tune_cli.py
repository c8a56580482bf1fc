"""The README's tuning story through the real CLI: tune (2 workers on the default SQLite storage)
-> show with plots -> inspect a trial's run -> train --from-study -> resume; and bad input."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import as_json
from tests.unit.test_tune_objective import tiny_digits

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_digits(data_dir, tmp_path_factory.mktemp("digits"))


def _base(digits: Path) -> tuple[str, ...]:
    return ("--data", str(digits), "--image-size", "28", "--model", "baseline-cnn", "--epochs", "2")


def _one_line_error(proc, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("cnnkit: error:") and "\n" not in err and "Traceback" not in err, err
    assert needle in err, err


def _trial_count(db: Path, study: str) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from trials join studies using (study_id) where study_name = ?",
                           (study,)).fetchone()[0]


def test_tune_show_inspect_retrain_resume(cli, digits: Path, tmp_path: Path):
    out = as_json(cli("tune", *_base(digits), "--trials", "4", "--workers", "2", "--study", "story", "--seed", "0", "--json"))
    assert out["study"] == "story" and out["created"] and out["worker_exit_codes"] == [0, 0]
    counts = out["counts"]
    assert counts["complete"] + counts["pruned"] == 4 and counts["fail"] == counts["running"] == 0
    assert sorted(t["number"] for t in out["trials"]) == [0, 1, 2, 3]
    assert out["best_trial"] is not None and out["best_run"] == f"story-t{out['best_trial']}:v1"
    db = cli.runs / "_studies" / "optuna.db"
    assert db.is_file()

    shown = as_json(cli("tune", "show", "story", "--json"))
    assert shown["best_value"] == out["best_value"] and shown["best_params"] == out["best_params"]
    for name in ("optimization_history", "intermediate_values", "param_importances", "parallel_coordinate"):
        assert name in shown["plots"] or name in shown["plots_skipped"]
    for path in shown["plots"].values():
        assert Path(path).read_bytes()[:8] == PNG and Path(path).parent == cli.runs / "_studies" / "story" / "plots"
    assert "optimization_history" in shown["plots"] and "intermediate_values" in shown["plots"]

    states = {r["ref"]: r["state"] for r in as_json(cli("runs", "list", "--json"))}
    for trial in out["trials"]:  # every trial is a run, marked with its state
        assert states[trial["run"]] == {"complete": "finished", "pruned": "pruned"}[trial["state"]]
    assert as_json(cli("runs", "show", out["best_run"], "--json"))["metrics"]["val_accuracy"] == pytest.approx(out["best_value"])

    best = as_json(cli("train", "--from-study", "story", "--no-progress", "--json"))
    assert best["run"] == "story-best:v1"
    record = yaml.safe_load((cli.runs / "story-best" / "v1" / "study.json").read_text())
    assert record["study"] == "story" and record["trial"] == out["best_trial"] and record["trial_run"] == out["best_run"]
    trial_cfg = yaml.safe_load((cli.runs / f"story-t{out['best_trial']}" / "v1" / "config.yaml").read_text())
    best_cfg = yaml.safe_load((cli.runs / "story-best" / "v1" / "config.yaml").read_text())
    assert best_cfg["train"] | {"progress": None, "threads": None} == trial_cfg["train"] | {"progress": None, "threads": None}
    assert best_cfg["model"] == trial_cfg["model"] and best_cfg["data"]["augment"] == trial_cfg["data"]["augment"]

    # Resume: only the name; the study's stored definition does the rest.
    again = as_json(cli("tune", "--study", "story", "--trials", "1", "--json"))
    assert not again["created"] and sorted(t["number"] for t in again["trials"]) == [0, 1, 2, 3, 4]

    # Joining with a different direction, space or option: refused, nothing written.
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {low: 0.01, high: 0.1, log: true}\n")
    refusals = [
        (("--metric", "val_loss"), "optimizes maximize; this command asks to minimize val_loss"),
        (("--space", str(space), *_base(digits)), "exists with a different search space"),
    ]
    for args, needle in refusals:
        _one_line_error(cli("tune", "--study", "story", "--trials", "1", *args, check=False), needle)
    assert _trial_count(db, "story") == 5


@pytest.mark.parametrize("space_text, needle", [
    ("params:\n  lr: {low: 0.5, high: 0.1}\n", "parameter 'lr': impossible range, low 0.5 > high 0.1"),
    ("params:\n  momentun: {low: 0.5, high: 0.9}\n", "unknown parameter 'momentun'"),
    ("params: {lr: [\n", "is not valid YAML"),
])
def test_a_bad_space_file_writes_nothing(cli, digits: Path, tmp_path: Path, space_text: str, needle: str):
    space = tmp_path / "bad.yaml"
    space.write_text(space_text)
    _one_line_error(cli("tune", *_base(digits), "--space", str(space), check=False), needle)
    assert not (cli.runs / "_studies").exists()


def test_unreachable_storage_and_unknown_studies(cli, digits: Path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    url = f"postgresql://me:s3cret@127.0.0.1:{port}/cnnkit"
    proc = cli("tune", *_base(digits), "--storage", url, check=False)
    _one_line_error(proc, f"cannot reach the study storage postgresql://me:***@127.0.0.1:{port}/cnnkit")
    assert "s3cret" not in proc.stderr
    _one_line_error(cli("tune", "show", "nope", check=False), "no study storage")
    _one_line_error(cli("train", "--from-study", "nope", check=False), "no study storage")
    _one_line_error(cli("tune", "--trials", "0", check=False), "--trials must be >= 1")
