from pathlib import Path

import pytest

from cnnkit.cli import build_parser, config_from_args
from cnnkit.config import Config, data_root, load_yaml, merge, parse_kwargs, runs_root
from cnnkit.errors import CnnkitError


def test_defaults_are_the_readme_job():
    cfg = Config()
    assert (cfg.data.name, cfg.model.name) == ("mnist", "cnn")


def test_from_dict_converts_strings_to_declared_types():
    cfg = Config.from_dict({"train": {"lr": "0.05", "epochs": "3", "deterministic": "yes"}, "data": {"image_size": "none"}})
    assert cfg.train.lr == 0.05 and cfg.train.epochs == 3 and cfg.train.deterministic is True
    assert cfg.data.image_size is None


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"lrr": 1}}, "unknown option train.lrr"),
        ({"trian": {}}, "unknown option trian"),
        ({"train": {"epochs": "x"}}, "train.epochs must be an integer"),
        ({"train": {"epochs": 2.5}}, "train.epochs must be an integer"),
        ({"train": {"optimizer": "rmsprop"}}, "train.optimizer must be one of"),
        ({"train": {"epochs": 0}}, "train.epochs must be >= 1"),
        ({"train": {"lr": -1}}, "train.lr must be > 0"),
        ({"data": {"val_fraction": 1.2}}, "data.val_fraction must be between"),
        ({"data": {"channels": 2}}, "data.channels must be 1 or 3"),
        ({"train": {"deterministic": "maybe"}}, "train.deterministic must be true or false"),
        ({"train": 3}, "train must be a mapping"),
    ],
)
def test_bad_options_name_the_option(raw, message):
    with pytest.raises(CnnkitError, match=message):
        Config.from_dict(raw)


def test_round_trip_through_dict():
    cfg = Config.from_dict({"model": {"name": "lenet5", "kwargs": {"width": 8}}, "train": {"ema": 0.99}})
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_parse_kwargs_uses_yaml_scalars_never_eval():
    assert parse_kwargs(["width=48", "dropout=0.25", "batch_norm=false", "name=abc"]) == {
        "width": 48, "dropout": 0.25, "batch_norm": False, "name": "abc"}
    assert parse_kwargs(["x=__import__('os')"]) == {"x": "__import__('os')"}
    with pytest.raises(CnnkitError):
        parse_kwargs(["novalue"])


def test_merge_is_deep_but_replaces_kwargs():
    base = {"train": {"lr": 1, "epochs": 2}, "model": {"kwargs": {"a": 1}}}
    assert merge(base, {"train": {"lr": 3}, "model": {"kwargs": {"b": 2}}}) == {
        "train": {"lr": 3, "epochs": 2}, "model": {"kwargs": {"b": 2}}}


def test_yaml_file_then_flags_win(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 7\n  lr: 0.01\nmodel:\n  name: lenet5\n")
    args = build_parser().parse_args(["train", "--config", str(f), "--epochs", "2", "--model-kwargs", "width=8"])
    cfg = config_from_args(args)
    assert (cfg.train.epochs, cfg.train.lr, cfg.model.name, cfg.model.kwargs) == (2, 0.01, "lenet5", {"width": 8})


@pytest.mark.parametrize("text, message", [("[1, 2]", "must hold a mapping"), ("a: [", "not valid YAML")])
def test_bad_yaml_files(tmp_path: Path, text: str, message: str):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(CnnkitError, match=message):
        load_yaml(f)
    with pytest.raises(CnnkitError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_roots_follow_flag_then_env_then_default(monkeypatch):
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    monkeypatch.delenv("CNNKIT_RUNS", raising=False)
    assert data_root(None) == Path("data") and runs_root(None) == Path("runs")
    monkeypatch.setenv("CNNKIT_DATA", "/x")
    monkeypatch.setenv("CNNKIT_RUNS", "/y")
    assert data_root(None) == Path("/x") and runs_root(None) == Path("/y")
    assert data_root("/z") == Path("/z")
