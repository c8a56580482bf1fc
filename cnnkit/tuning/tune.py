"""Hyperparameter tuning with Optuna: search, prune, share a study, retrain the best trial.

``tune(options, explicit)`` checks everything before it writes anything (the options, the
space, the storage, an existing study's direction/space/options, the data and the model's
ranges), then runs K worker processes that share the study. Each trial is a real run of the
spine named ``STUDY-tN``; ``show`` reports a study and saves its plots; ``best_config`` gives
``cnnkit train --from-study`` the best trial's configuration. The parts live in
``cnnkit.tuning``; Optuna is imported only when one of these functions runs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.config import Config, merge, runs_root
from cnnkit.errors import CnnkitError
from cnnkit.tuning.names import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_METRIC,
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    DEFAULT_TRIALS,
    METRICS,
    PRUNERS,
    SAMPLERS,
)


@dataclass
class TuneOptions:
    """The options of ``cnnkit tune`` beyond the training config; None = the study's or the default."""

    study: str | None = None
    storage: str | None = None
    trials: int | None = None
    timeout: float | None = None
    workers: int = 1
    space: str | None = None
    sampler: str | None = None
    pruner: str | None = None
    metric: str | None = None
    heartbeat: int = DEFAULT_HEARTBEAT_S

    def check(self) -> None:
        minimums = (("--trials", self.trials, 1), ("--workers", self.workers, 1), ("--heartbeat", self.heartbeat, 1))
        for name, value, low in minimums:
            if value is not None and value < low:
                raise CnnkitError(f"{name} must be >= {low}; got {value}")
        if self.timeout is not None and not self.timeout > 0:
            raise CnnkitError(f"--timeout must be > 0 seconds; got {self.timeout}")
        tables = (("--sampler", self.sampler, SAMPLERS), ("--pruner", self.pruner, PRUNERS), ("--metric", self.metric, METRICS))
        for flag, value, table in tables:
            if value is not None and value not in table:
                raise CnnkitError(f"{flag} must be one of {', '.join(table)}; got {value!r}")


def _require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise CnnkitError("tuning needs Optuna: pip install 'cnnkit[tune]'") from None


def default_study_name(cfg: Config) -> str:
    label = f"{Path(cfg.data.name).name}-{cfg.model.name}"
    from cnnkit.runs import slug

    return slug(label, "study")


def _space_for(opts: TuneOptions, cfg: Config) -> Any:
    from cnnkit.tuning.base import model_options
    from cnnkit.tuning.defaults import default_space
    from cnnkit.tuning.space import load_space_file

    default = default_space(cfg.model.name, cfg.train.epochs, model_options(cfg.model.name))
    return load_space_file(opts.space, default) if opts.space else default


def _targets(space: Any, cfg: Config) -> dict[str, str]:
    """Where each parameter goes; every endpoint and choice checked against the config."""
    from cnnkit.tuning.base import model_options, split, targets, validate_values

    options = model_options(cfg.model.name)
    where = targets(space, options)
    shared, local = split(cfg.to_dict())
    validate_values(space, where, shared, local, options)
    return where


def _preflight(space: Any, where: dict[str, str], cfg: Config) -> None:
    """The data exists and has a validation split, batches fit, the model's ranges build."""
    from cnnkit.data.checks import require_usable
    from cnnkit.data.sources import load_dataset
    from cnnkit.tuning.base import check_model_extremes, largest

    ds = load_dataset(cfg.data, cfg.train.seed)
    require_usable(ds)
    if ds.val is None or not len(ds.val):
        raise CnnkitError("tuning compares trials on a validation split; set --val-fraction above 0")
    batch = largest(space, "batch_size") or cfg.train.batch_size
    if batch > len(ds.train):
        raise CnnkitError(f"batch_size can reach {batch}, more than the {len(ds.train)} training images")
    size = cfg.data.image_size or ds.image_size
    check_model_extremes(space, where, cfg, ds.num_classes, ds.channels, size)


def _plan(name: str, url: str, meta: Any, opts: TuneOptions, cfg: Config, space: Any, where: dict[str, str],
          seed: int | None, trials_before: int) -> Any:
    from cnnkit.tuning.base import split
    from cnnkit.tuning.objective import TrialSetup
    from cnnkit.tuning.storage import redact
    from cnnkit.tuning.workers import Plan

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = cfg.train.threads or max(1, cores // opts.workers)  # K workers must not oversubscribe the cores
    shared, local = split(cfg.to_dict())
    local = merge(local, {"train": {"threads": threads, "progress": False},
                          "run": {"runs_dir": str(runs_root(cfg.run.runs_dir).resolve())}})
    setup = TrialSetup(name, redact(url), meta.metric, space.to_dict(), where, shared, local)
    deadline = time.time() + opts.timeout if opts.timeout else None
    trials = opts.trials if opts.trials or opts.timeout else DEFAULT_TRIALS
    return Plan(setup, url, opts.heartbeat, opts.sampler or meta.sampler, opts.pruner or meta.pruner, meta.max_epochs,
                seed, threads, trials, deadline, trials_before)


def tune(opts: TuneOptions, explicit: dict[str, Any], seed_given: bool = False) -> dict[str, Any]:
    """Create or join the study, run its workers, and return the study's summary.

    ``explicit`` holds the config options the user gave (flags, --config); ``seed_given`` says
    whether ``--seed`` was among them (it then also seeds the samplers, for reproducible runs).
    """
    _require_optuna()
    from cnnkit.runs import check_name
    from cnnkit.tuning import study as studies
    from cnnkit.tuning.base import largest, split
    from cnnkit.tuning.storage import default_url, open_storage, redact
    from cnnkit.tuning.summary import summarize
    from cnnkit.tuning.workers import run_workers

    opts.check()
    cfg = Config.from_dict(explicit)
    if cfg.run.register:  # one registered version per trial would flood the registry
        raise CnnkitError("run.register is for one trained model: cnnkit train --from-study STUDY --track mlflow --register NAME")
    space = _space_for(opts, cfg)
    _targets(space, cfg)  # a bad space is refused before the storage is even opened
    name = check_name(opts.study or default_study_name(cfg))
    url = opts.storage or default_url(cfg.run.runs_dir)
    storage = open_storage(url)
    max_epochs = int(largest(space, "epochs") or cfg.train.epochs)  # Hyperband's maximum resource
    meta_new = studies.StudyMeta(opts.metric or DEFAULT_METRIC, space.to_dict(), split(cfg.to_dict())[0],
                                 opts.sampler or DEFAULT_SAMPLER, opts.pruner or DEFAULT_PRUNER, max_epochs)
    req = studies.Request(name, meta_new, opts.metric is not None, opts.space is not None, explicit)
    stored = studies.find(storage, req)
    if stored is not None:  # joining: the study's definition, this machine's local options
        space = type(space).from_dict(stored.space)
        cfg = Config.from_dict(merge(stored.shared, split(cfg.to_dict())[1]))
    where = _targets(space, cfg)
    _preflight(space, where, cfg)
    studies.check_sampler(opts.sampler or (stored or meta_new).sampler, space.numeric_count())
    meta = stored or studies.create(storage, req)
    trials_before = len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    plan = _plan(name, url, meta, opts, cfg, space, where, cfg.train.seed if seed_given else None, trials_before)
    parent = _track_study(cfg, name, meta, redact(url))
    if parent is not None:
        plan.setup.tracking_parent = parent.run_id
    t0 = time.perf_counter()
    codes = run_workers(plan, opts.workers)
    summary = summarize(studies.load(storage, name), redact(url))
    summary.update(created=stored is None, workers=opts.workers, worker_exit_codes=codes,
                   seconds=round(time.perf_counter() - t0, 1))
    if parent is not None:
        from cnnkit.training.tracking import finish_parent

        finish_parent(parent, summary)
    return summary


def _track_study(cfg: Config, name: str, meta: Any, storage: str) -> Any:
    """``--track mlflow``: the study's MLflow run (its trials' runs nest under it), or None."""
    if cfg.run.track == "none":
        return None
    from cnnkit.training.tracking import start_parent

    params = {"study": name, "storage": storage, "metric": meta.metric, "sampler": meta.sampler, "pruner": meta.pruner,
              "space": meta.space}
    return start_parent(cfg, name, params)[1]


def show(name: str, storage: str | None = None, runs_dir: str | None = None, plots: bool = True) -> dict[str, Any]:
    """A study's summary; with ``plots``, its PNG plots saved under ``<runs>/_studies/NAME/plots``."""
    _require_optuna()
    from cnnkit.tuning import study as studies
    from cnnkit.tuning.storage import default_url, open_storage, redact, study_folder
    from cnnkit.tuning.summary import save_plots, summarize

    url = storage or default_url(runs_dir)
    study = studies.load(open_storage(url, create=False), name)
    summary = summarize(study, redact(url))
    if plots:
        saved, skipped = save_plots(study, study_folder(runs_dir, name) / "plots")
        summary.update(plots=saved, plots_skipped=skipped)
    return summary


def best_config(name: str, storage: str | None, explicit: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    """The best trial's configuration (its recorded config < ``explicit`` flags) and where it came from."""
    _require_optuna()
    from cnnkit.tuning import study as studies
    from cnnkit.tuning.storage import default_url, open_storage, redact

    runs_dir = explicit.get("run", {}).get("runs_dir")
    url = storage or default_url(runs_dir)
    study = studies.load(open_storage(url, create=False), name)
    meta = studies.meta_of(study)
    try:
        best = study.best_trial
    except ValueError:
        raise CnnkitError(f"study {name!r} has no completed trial yet") from None
    trained = best.user_attrs.get("config")
    if not trained:
        raise CnnkitError(f"trial {best.number} of study {name!r} has no recorded config")
    cfg = Config.from_dict(merge(merge(trained, {"run": {"name": f"{name}-best"}}), explicit))
    origin = {"study": name, "storage": redact(url), "trial": best.number, "trial_run": best.user_attrs.get("run"),
              "metric": meta.metric, "value": best.value, "params": best.params}
    return cfg, origin


def train_from_study(name: str, storage: str | None = None, explicit: dict[str, Any] | None = None) -> Any:
    """``cnnkit train --from-study NAME``: the best trial's config (< ``explicit`` options) as a new run,
    with ``study.json`` naming where it came from."""
    from cnnkit.training.run import train_run

    cfg, origin = best_config(name, storage, explicit or {})
    return train_run(cfg, on_created=lambda run: run.write("study.json", origin))
