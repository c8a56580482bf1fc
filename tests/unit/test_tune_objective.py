"""A trial is a real run of the spine: complete, pruned at once, or failed, and marked as such."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from cnnkit.config import Config
from cnnkit.errors import CnnkitError
from cnnkit.runs import RunStore, load
from cnnkit.tuning.base import split
from cnnkit.tuning.objective import TrialSetup, run_trial
from cnnkit.tuning.space import Space


def tiny_digits(data_dir: Path, root: Path, per_class: int = 50) -> Path:
    """An image folder of real MNIST digits (10 x ``per_class`` PNGs): trials in about a second.

    Shared with the tuning e2e and integration tests.
    """
    from PIL import Image

    from cnnkit.data.builtins import load_builtin

    ds = load_builtin("mnist", data_dir, download=False)
    counts = [0] * 10
    for image, label in zip(ds.train.images, ds.train.labels.tolist()):
        if counts[label] < per_class:
            folder = root / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy()).save(folder / f"{counts[label]}.png")
            counts[label] += 1
        if min(counts) >= per_class:
            break
    return root


@pytest.fixture(scope="module")
def digits(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_digits(data_dir, tmp_path_factory.mktemp("digits"))


SPACE = {"lr": {"low": 0.02, "high": 0.1, "log": True}, "dropout": {"low": 0.0, "high": 0.3}}


def _setup(digits: Path, runs: Path, epochs: int, space: dict | None = None) -> TrialSetup:
    cfg = Config.from_dict({"data": {"name": str(digits), "image_size": 28}, "model": {"name": "baseline-cnn"},
                            "train": {"epochs": epochs, "batch_size": 64, "progress": False, "threads": 1},
                            "run": {"runs_dir": str(runs)}})
    shared, local = split(cfg.to_dict())
    return TrialSetup("st", "sqlite:///x", "val_accuracy", space or SPACE,
                      {"lr": "train.lr", "dropout": "model.kwargs.dropout", "batch_size": "train.batch_size"}, shared, local)


def test_a_complete_trial_is_a_loadable_run_that_names_its_study(digits: Path, tmp_path: Path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    setup = _setup(digits, tmp_path / "runs", epochs=2)
    study.optimize(lambda t: run_trial(setup, t), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["run"] == "st-t0:v1"
    run = RunStore(tmp_path / "runs").get("st-t0")
    assert run.status()["state"] == "finished"
    assert run.read("trial.json") == {"study": "st", "trial": 0, "storage": "sqlite:///x", "params": trial.params}
    assert trial.value == pytest.approx(run.read("metrics.json")["val_accuracy"])
    assert list(trial.intermediate_values) == [1, 2]
    cfg = run.load_config()
    assert cfg["train"]["lr"] == trial.params["lr"] and cfg["model"]["kwargs"]["dropout"] == trial.params["dropout"]
    assert trial.user_attrs["config"]["train"]["lr"] == trial.params["lr"]  # what --from-study retrains
    assert load("st-t0", runs_dir=str(tmp_path / "runs")).model is not None


def test_a_pruned_trial_stops_at_once_and_its_run_says_pruned(digits: Path, tmp_path: Path):
    # This pruner prunes everything: the trial must stop after its first epoch of three.
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    setup = _setup(digits, tmp_path / "runs", epochs=3)
    study.optimize(lambda t: run_trial(setup, t), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [1]
    run = RunStore(tmp_path / "runs").get("st-t0")
    status = run.status()
    assert status["state"] == "pruned" and status["pruned_after_epoch"] == 1 and status.get("error") is None
    assert len(run.read("history.json")) == 1
    assert not run.file("model.safetensors").exists() and not run.file("metrics.json").exists()


def test_the_last_epoch_is_never_pruned(digits: Path, tmp_path: Path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    setup = _setup(digits, tmp_path / "runs", epochs=1)
    study.optimize(lambda t: run_trial(setup, t), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_a_failing_trial_is_failed_and_so_is_its_run(digits: Path, tmp_path: Path):
    space = {"batch_size": {"choices": [4096]}}  # more than the training images: the spine refuses it
    study = optuna.create_study(direction="maximize")
    setup = _setup(digits, tmp_path / "runs", epochs=1, space=space)
    study.optimize(lambda t: run_trial(setup, t), n_trials=1, catch=(CnnkitError,))
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL and "fewer than one batch" in trial.user_attrs["error"]
    assert RunStore(tmp_path / "runs").get("st-t0").status()["state"] == "failed"


def test_space_is_rebuilt_from_its_canonical_form():
    assert Space.from_dict(SPACE).to_dict() == Space.from_dict(Space.from_dict(SPACE).to_dict()).to_dict()
