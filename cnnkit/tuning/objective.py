"""One trial = one real run of the spine: sampled config -> ``train_run`` -> the validation metric.

The trial's run is named ``STUDY-tN`` (trial number N), so it can be listed, shown, evaluated
and loaded like any run; ``trial.json`` in it names the study and trial, and the trial's user
attributes name the run. Each epoch the validation metric is reported to Optuna; when the
pruner says so, the callback raises ``TrialPruned`` at once (no final evaluation, no weights:
the worker is free for the next trial) and the run is marked ``pruned``.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from cnnkit.errors import CnnkitError
from cnnkit.runs import RunDir
from cnnkit.tuning.base import apply, split
from cnnkit.tuning.space import Space


@dataclass
class TrialSetup:
    """Everything a worker needs to run trials; plain data, so it crosses process boundaries."""

    study: str
    storage: str  # redacted: recorded in each run
    metric: str
    space: dict[str, Any]
    targets: dict[str, str]  # parameter name -> config target
    shared: dict[str, Any]
    local: dict[str, Any]
    tracking_parent: str | None = None  # --track mlflow: the study's MLflow run, each trial's run nests under it


class PruningReporter:
    """The training callback: report the metric each epoch; raise TrialPruned when told to.

    The last epoch is reported but never pruned: stopping there saves nothing, and the trial
    is better kept as a complete one with its weights and test metrics.
    """

    def __init__(self, trial: optuna.Trial, metric: str, epochs: int) -> None:
        self.trial, self.metric, self.epochs = trial, metric, epochs
        self.history: list[dict[str, float]] = []

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        self.history.append(dict(metrics))
        value = metrics.get(self.metric)
        if value is None:
            return
        self.trial.report(float(value), step=epoch + 1)
        if epoch + 1 < self.epochs and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: {self.metric} {value:.4f}")


def trial_run_name(study: str, number: int) -> str:
    return f"{study}-t{number}"


def _record_run(trial: optuna.Trial, setup: TrialSetup, sampled: dict[str, Any], run: RunDir) -> None:
    trial.set_user_attr("run", run.ref)
    trial.set_user_attr("run_path", str(run.path.resolve()))
    run.write("trial.json", {"study": setup.study, "trial": trial.number, "storage": setup.storage, "params": sampled})


def run_trial(setup: TrialSetup, trial: optuna.Trial) -> float:
    """The objective: train the sampled configuration and return its validation metric."""
    from cnnkit.training.run import train_run

    # A retried trial inherits the dead one's attributes; these describe this attempt.
    for key, value in {"host": socket.gethostname(), "pid": os.getpid(), "run": None, "run_path": None}.items():
        trial.set_user_attr(key, value)
    sampled = Space.from_dict(setup.space).suggest(trial)
    local = {**setup.local, "run": {**setup.local.get("run", {}), "name": trial_run_name(setup.study, trial.number)}}
    cfg = apply(setup.shared, local, {setup.targets[name]: value for name, value in sampled.items()})
    trial.set_user_attr("config", split(cfg.to_dict())[0])  # what this trial trained, for --from-study
    reporter = PruningReporter(trial, setup.metric, cfg.train.epochs)
    runs: list[RunDir] = []

    def created(run: RunDir) -> None:
        runs.append(run)
        _record_run(trial, setup, sampled, run)

    try:
        outcome = train_run(cfg, callbacks=[reporter], on_created=created, tracking_parent=setup.tracking_parent)
    except optuna.TrialPruned:
        if runs:
            runs[0].write("history.json", reporter.history)
            runs[0].set_status("pruned", error=None, pruned_after_epoch=len(reporter.history))
        raise
    except Exception as exc:
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
        raise
    value = outcome.metrics.get(setup.metric)
    if value is None:
        raise CnnkitError(f"the run {outcome.run.ref} has no {setup.metric} (no validation split?)")
    # Recorded for inspection only: trials are chosen on validation data, never on the test set.
    trial.set_user_attr("test_accuracy", outcome.metrics.get("test_accuracy"))
    return float(value)


def mark_stale_run(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A dead worker's trial was failed by the heartbeat: mark its run failed too, if it is here."""
    path, ref = trial.user_attrs.get("run_path"), trial.user_attrs.get("run")
    if not path or not ref or not (Path(path) / "status.json").is_file():
        return
    name, _, version = str(ref).rpartition(":v")
    run = RunDir(Path(path), name, int(version))
    record = run.read("trial.json", {})
    if record.get("study") != study.study_name or record.get("trial") != trial.number:
        return  # another machine's run at the same path
    if run.status().get("state") in ("created", "running"):
        run.set_status("failed", error="its worker stopped sending heartbeats (killed?); the trial was failed")


class StaleTrialHandler:
    """Optuna's heartbeat callback: mark the run failed, then queue the same parameters once more."""

    def __init__(self, max_retry: int = 1) -> None:
        import warnings

        from optuna.exceptions import ExperimentalWarning
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        mark_stale_run(study, trial)
        self.retry(study, trial)
