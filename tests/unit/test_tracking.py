"""The MLflow mirror's pure parts and its refusals (no server: see tests/integration/test_mlflow.py)."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from cnnkit.config import Config
from cnnkit.errors import CnnkitError
from cnnkit.training import tracking


def test_flatten_names_nested_options_with_dots():
    flat = tracking.flatten({"train": {"lr": 0.05, "epochs": 2}, "model": {"kwargs": {"width": 8}, "init": None},
                             "data": {"kwargs": {}}})
    assert flat == {"train.lr": "0.05", "train.epochs": "2", "model.kwargs.width": "8", "model.init": "None",
                    "data.kwargs": "{}"}


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(None) == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert tracking.tracking_uri(None) == "http://tracker:5000"
    assert tracking.tracking_uri("https://other") == "https://other"
    assert tracking.tracking_uri("elsewhere") == f"sqlite:///{tmp_path.resolve() / 'elsewhere' / 'mlflow.db'}"


def test_redact_hides_the_password():
    assert tracking.redact("https://me:secret@host:8443/x") == "https://me:***@host:8443/x"
    assert tracking.redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_config_file_and_flags_take_track(tmp_path: Path):
    cfg = Config.from_dict({"run": {"track": "mlflow", "tracking_uri": "http://x", "register": "digits"}})
    assert (cfg.run.track, cfg.run.tracking_uri, cfg.run.register) == ("mlflow", "http://x", "digits")
    with pytest.raises(CnnkitError, match="run.track must be one of none, mlflow"):
        Config.from_dict({"run": {"track": "wandb"}})
    with pytest.raises(CnnkitError, match="run.register needs run.track mlflow"):
        Config.from_dict({"run": {"register": "digits"}})


def test_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    with pytest.raises(CnnkitError, match=r'pip install "cnnkit\[mlflow\]"'):
        tracking.Tracker.start(Config.from_dict({"run": {"track": "mlflow"}}))


def test_an_unreachable_server_is_one_warning_and_no_calls(monkeypatch: pytest.MonkeyPatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    err = io.StringIO()
    cfg = Config.from_dict({"run": {"track": "mlflow", "tracking_uri": f"http://127.0.0.1:{port}"}})
    tracker = tracking.Tracker.start(cfg, err=err)
    tracker(0, {"train_loss": 1.0})  # an epoch: silently skipped
    assert err.getvalue().count("warning") == 1 and "cannot reach the tracking server" in err.getvalue()
    record = tracker.record()
    assert record["state"] == "incomplete" and "cannot reach" in record["error"]
    assert "NOT fully mirrored" in tracking.summary_line(record)
