"""The search space: default spaces, the YAML format and its validation, sampling with Optuna."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from cnnkit.config import Config
from cnnkit.errors import CnnkitError
from cnnkit.models import model_names
from cnnkit.tuning.base import apply, model_options, split, targets, validate_values
from cnnkit.tuning.defaults import LR_RANGES, default_space
from cnnkit.tuning.space import Space, load_space_file


def _space_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


def _check(space: Space, model: str = "cnn") -> dict[str, str]:
    cfg = Config.from_dict({"model": {"name": model}})
    options = model_options(model)
    where = targets(space, options)
    shared, local = split(cfg.to_dict())
    validate_values(space, where, shared, local, options)
    return where


@pytest.mark.parametrize("model", model_names())
def test_every_model_has_a_valid_default_space(model: str):
    space = default_space(model, 8, model_options(model))
    where = _check(space, model)
    assert {"lr", "batch_size", "optimizer", "weight_decay", "schedule", "label_smoothing", "augment", "epochs"} <= set(space.params)
    assert where["lr"] == "train.lr" and where["augment"] == "data.augment"
    if "dropout" in model_options(model):
        assert where["dropout"] == "model.kwargs.dropout"


def test_family_specific_parameters():
    cnn = default_space("cnn", 8, model_options("cnn"))
    assert cnn.params["width"].kind == "int" and cnn.params["dropout"].kind == "float"
    assert default_space("vgg11", 8, model_options("vgg11")).params["width"].kind == "float"
    assert "dropout" not in default_space("lenet5", 8, model_options("lenet5")).params
    epochs = cnn.params["epochs"]
    assert (epochs.low, epochs.high) == (2, 8)  # --epochs is the budget's top
    assert default_space("cnn", 1, {}).params["epochs"].high == 1


def test_sampled_values_respect_ranges_and_conditions():
    space = default_space("cnn", 8, model_options("cnn"))
    where = _check(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        values = space.suggest(trial)
        cfg = apply(split(Config().to_dict())[0], {}, {where[k]: v for k, v in values.items()})
        low, high = LR_RANGES[values["optimizer"]]
        assert low <= cfg.train.lr <= high and f"lr_{values['optimizer']}" in trial.params
        assert 16 <= cfg.model.kwargs["width"] <= 64 and cfg.model.kwargs["width"] % 8 == 0
        assert cfg.train.batch_size in (64, 128, 256) and 2 <= cfg.train.epochs <= 8
        seen.add(values["optimizer"])
        study.tell(trial, 0.5)
    assert seen == {"sgd", "adamw"}


def test_space_file_round_trip_and_canonical_form(tmp_path: Path):
    p = _space_file(tmp_path, """
params:
  optimizer: {choices: [sgd, adam]}
  lr: {log: true, by: optimizer, ranges: {sgd: [0.01, 0.3], adam: [1e-4, 3e-3]}}
  width: {low: 16, high: 48, step: 16}
  dropout: {low: 0.0, high: 0.4}
""")
    space = load_space_file(p, Space())
    assert space.params["lr"].ranges == (("sgd", 0.01, 0.3), ("adam", 1e-4, 3e-3))  # "1e-4" read as a number
    assert space.params["width"].kind == "int" and space.params["dropout"].kind == "float"
    assert Space.from_dict(space.to_dict()).to_dict() == space.to_dict()
    _check(space)


def test_extends_default_overrides_and_removes(tmp_path: Path):
    default = default_space("cnn", 8, model_options("cnn"))
    p = _space_file(tmp_path, "extends: default\nparams:\n  dropout: null\n  width: {low: 8, high: 16}\n")
    space = load_space_file(p, default)
    assert "dropout" not in space.params and space.params["width"].high == 16
    assert set(space.params) == set(default.params) - {"dropout"}


@pytest.mark.parametrize("text, message", [
    ("params:\n  learning_rate: {low: 0.1, high: 1.0}\n", "unknown parameter 'learning_rate'"),
    ("params:\n  lr: {low: 0.5, high: 0.1}\n", "parameter 'lr': impossible range, low 0.5 > high 0.1"),
    ("params:\n  lr: {low: 0.0, high: 0.1, log: true}\n", "parameter 'lr': a log range needs low > 0"),
    ("params:\n  width: {low: 16, high: 60, step: 8}\n", "parameter 'width': step 8 does not divide"),
    ("params:\n  optimizer: {choices: [sgd, rmsprop]}\n", "parameter 'optimizer': train.optimizer must be one of"),
    ("params:\n  label_smoothing: {low: 0.0, high: 1.5}\n", "parameter 'label_smoothing': train.label_smoothing must be between"),
    ("params:\n  batch_size: {low: 32.5, high: 64}\n", "parameter 'batch_size': train.batch_size must be an integer"),
    ("params:\n  width: {low: 0.5, high: 2.0}\n", "parameter 'width': the model option takes values like"),
    ("params:\n  lr: {low: 0.1, hi: 1.0}\n", "parameter 'lr': unknown key 'hi'"),
    ("params:\n  lr: {low: 0.1}\n", "parameter 'lr': needs low and high"),
    ("params:\n  lr: {low: abc, high: 1.0}\n", "parameter 'lr': low must be a number"),
    ("params:\n  optimizer: {choices: [sgd, adam]}\n  lr: {by: optimizer, ranges: {sgd: [0.01, 0.1]}}\n",
     "parameter 'lr': no range for 'adam'"),
    ("params:\n  lr: {by: schedule, ranges: {sgd: [0.01, 0.1]}}\n", "by 'schedule' must name a categorical parameter"),
    ("params:\n  optimizer: {choices: []}\n", "choices must be a non-empty list"),
    ("parameters:\n  lr: {low: 0.1, high: 1.0}\n", "unknown key 'parameters'"),
    ("params: [lr]\n", "params must be a mapping"),
    ("params:\n  lr: [0.1, 1.0]\n", "parameter 'lr' must be a mapping"),
    ("params: {lr: {low: 0.1, high: 1.0}\n", "is not valid YAML"),
    ("params: {}\n", "the space has no parameters"),
])
def test_bad_space_files_name_the_problem(tmp_path: Path, text: str, message: str):
    p = _space_file(tmp_path, text)
    with pytest.raises(CnnkitError) as err:
        _check(load_space_file(p, Space()))
    assert message in str(err.value)
    assert str(p) in str(err.value) or "parameter" in str(err.value)


def test_missing_space_file(tmp_path: Path):
    with pytest.raises(CnnkitError, match="not found"):
        load_space_file(tmp_path / "nope.yaml", Space())


def test_the_readme_space_example_is_valid(tmp_path: Path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```yaml\nextends: default")
    example = readme[start + len("```yaml\n"):readme.index("```", start + 7)]
    space = load_space_file(_space_file(tmp_path, example), default_space("cnn", 8, model_options("cnn")))
    assert "dropout" not in space.params and space.params["lr"].by == "optimizer"
    _check(space)
