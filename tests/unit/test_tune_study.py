"""Storage and studies: bad URLs, joining checks that write nothing, SQLite under several
processes, and the heartbeat failing a trial whose process was killed."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from cnnkit.config import Config
from cnnkit.errors import CnnkitError
from cnnkit.runs import RunStore
from cnnkit.tuning import names
from cnnkit.tuning import study as studies
from cnnkit.tuning.base import model_options, split
from cnnkit.tuning.defaults import default_space
from cnnkit.tuning.objective import StaleTrialHandler
from cnnkit.tuning.space import Space
from cnnkit.tuning.storage import default_url, open_storage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies' / 'optuna.db'}"


def _request(name: str, metric: str = "val_accuracy", epochs: int = 4, explicit: dict | None = None,
             metric_given: bool = False, space_given: bool = False) -> studies.Request:
    cfg = Config.from_dict({"model": {"name": "cnn"}, "train": {"epochs": epochs}})
    space = default_space("cnn", epochs, model_options("cnn"))
    meta = studies.StudyMeta(metric, space.to_dict(), split(cfg.to_dict())[0], "tpe", "hyperband", epochs)
    return studies.Request(name, meta, metric_given, space_given, explicit or {})


@pytest.mark.parametrize("url, message", [
    ("postgresql://me:s3cret@127.0.0.1:{port}/db", "cannot reach the study storage postgresql://me:***@127.0.0.1"),
    ("nosuchdb://host/db", "unusable study storage URL nosuchdb://host/db"),
    ("mysql://me:s3cret@127.0.0.1:{port}/db", "its Python driver is missing"),
    ("not a url", "unusable study storage URL"),
])
def test_unusable_storage_is_one_line_without_the_password(url: str, message: str):
    t0 = time.monotonic()
    with pytest.raises(CnnkitError) as err:
        open_storage(url.format(port=_free_port()))
    text = str(err.value)
    assert message in text and "s3cret" not in text and "\n" not in text
    assert time.monotonic() - t0 < 15


def test_default_storage_lives_under_the_runs_dir(tmp_path: Path):
    url = default_url(str(tmp_path / "runs"))
    assert url == f"sqlite:///{(tmp_path / 'runs' / '_studies' / 'optuna.db').resolve()}"
    with pytest.raises(CnnkitError, match="no study storage"):
        open_storage(url, create=False)  # reading (show, --from-study) never creates one
    assert not (tmp_path / "runs").exists()


def _snapshot(storage, name: str) -> tuple:
    sid = storage.get_study_id_from_name(name)
    return (storage.get_study_user_attrs(sid), len(storage.get_all_trials(sid)), storage.get_study_directions(sid))


def test_joining_checks_direction_space_and_options_before_writing(tmp_path: Path):
    storage = open_storage(_sqlite(tmp_path))
    req = _request("s")
    assert studies.find(storage, req) is None
    assert studies.create(storage, req) == req.meta
    before = _snapshot(storage, "s")
    assert studies.find(storage, _request("s")) == req.meta  # the same definition joins
    refusals = [
        (_request("s", metric="val_loss", metric_given=True), "optimizes maximize; this command asks to minimize val_loss"),
        (_request("s", epochs=6, space_given=True), "exists with a different search space: 'epochs'"),
        (_request("s", explicit={"data": {"name": "fashion-mnist"}}), "data.name: the study has 'mnist', this command 'fashion-mnist'"),
    ]
    for bad, message in refusals:
        with pytest.raises(CnnkitError) as err:
            studies.find(storage, bad)
        assert message in str(err.value)
    # Local options (threads, device, folders) may differ from machine to machine.
    assert studies.find(storage, _request("s", explicit={"train": {"threads": 1, "device": "cpu"}})) == req.meta
    assert _snapshot(storage, "s") == before


def test_a_study_not_made_by_cnnkit_is_refused(tmp_path: Path):
    storage = open_storage(_sqlite(tmp_path))
    optuna.create_study(storage=storage, study_name="foreign", direction="minimize")
    with pytest.raises(CnnkitError, match="optimizes minimize; this command asks to maximize val_accuracy"):
        studies.find(storage, _request("foreign"))
    optuna.create_study(storage=storage, study_name="foreign2", direction="maximize")
    with pytest.raises(CnnkitError, match="was not created by cnnkit tune"):
        studies._check_join(storage, storage.get_study_id_from_name("foreign2"), _request("foreign2"))


def test_the_cli_choices_are_the_study_tables():
    """The CLI offers cnnkit.tuning.names without importing Optuna; the study builds what it names."""
    assert tuple(studies.SAMPLERS) == names.SAMPLERS
    assert tuple(studies.PRUNERS) == names.PRUNERS
    assert studies.METRICS == names.METRIC_DIRECTIONS
    assert {names.DEFAULT_SAMPLER, names.DEFAULT_PRUNER, names.DEFAULT_METRIC} <= {*names.SAMPLERS, *names.PRUNERS,
                                                                                  *names.METRICS}
    from cnnkit.cli import build_parser

    tune = build_parser()._subparsers._group_actions[0].choices["tune"]
    choices = {a.dest: tuple(a.choices) for a in tune._actions if a.choices and a.dest in ("sampler", "pruner", "metric")}
    assert choices == {"sampler": names.SAMPLERS, "pruner": names.PRUNERS, "metric": names.METRICS}


def test_samplers_and_pruners_tables():
    for name in studies.SAMPLERS:
        assert isinstance(studies.make_sampler(name, 0), optuna.samplers.BaseSampler)
    for pruner in studies.PRUNERS.values():
        assert isinstance(pruner(8), optuna.pruners.BasePruner)
    with pytest.raises(CnnkitError, match="at least 2 numeric"):
        studies.check_sampler("cmaes", 1)


def _first_draws(sampler: optuna.samplers.BaseSampler, n: int = 3) -> list[tuple[int, float]]:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    draws = []
    for _ in range(n):
        trial = study.ask()
        draws.append((trial.suggest_int("width", 16, 64, step=8), trial.suggest_float("lr", 1e-4, 1.0, log=True)))
        study.tell(trial, 0.5)
    return draws


def test_worker_samplers_are_seeded_by_the_command_not_by_start_order():
    """Each worker's draws depend on the seed, its index and the trials the study had when the command
    started (counted once by the parent), never on how many trials the other workers had already asked
    for when this worker got going: the same seeded command samples the same points every time."""
    from cnnkit.tuning.workers import Plan, sampler_for

    def plan(seed: int | None, before: int) -> Plan:
        return Plan(None, "sqlite://", 20, "tpe", "hyperband", 8, seed, 1, None, None, before)

    fresh = [_first_draws(sampler_for(plan(0, 0), i)) for i in (0, 1)]
    assert fresh == [_first_draws(sampler_for(plan(0, 0), i)) for i in (0, 1)]  # reproducible
    assert fresh[0] != fresh[1]  # workers spread out
    assert _first_draws(sampler_for(plan(0, 5), 0)) not in fresh  # a resumed study draws new points
    assert _first_draws(sampler_for(plan(1, 0), 0)) != fresh[0]


def _epochs_trained(pruner: optuna.pruners.BasePruner, name: str, trials: int = 150, epochs: int = 9) -> float:
    """Mean epochs per trial when trials report a steady value each epoch (their rank never changes)."""
    rng = np.random.default_rng(0)
    study = optuna.create_study(study_name=name, direction="maximize", pruner=pruner)
    total = 0
    for _ in range(trials):
        trial, value = study.ask(), float(rng.random())
        for epoch in range(1, epochs + 1):
            trial.report(value, epoch)
            total += 1
            if epoch < epochs and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, value)
    return total / trials


@pytest.mark.parametrize("name", ["a", "b", "c"])  # the study name decides each trial's bracket
def test_hyperband_trains_well_under_half_the_epochs_of_no_pruning(name: str):
    """Trials of 9 epochs: Hyperband with reduction factor 4 trains 3.1-3.8 epochs per trial here;
    factor 3 would train 4.3-4.8 (three brackets, one of which never prunes)."""
    assert _epochs_trained(studies.PRUNERS["none"](9), name) == 9
    assert _epochs_trained(studies.PRUNERS["hyperband"](9), name) < 4.0


def _hammer(url: str, name: str, n: int) -> None:
    """A worker process: many quick trials on a shared SQLite study (no training)."""
    storage = open_storage(url, heartbeat=1, on_stale=StaleTrialHandler())
    study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("y", 0, 3), n_trials=n)


def test_sqlite_takes_several_writing_processes(tmp_path: Path):
    url = _sqlite(tmp_path)
    open_storage(url)
    optuna.create_study(storage=url, study_name="busy", direction="maximize")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(url, "busy", 20)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]  # no "database is locked"
    trials = optuna.load_study(study_name="busy", storage=url).get_trials()
    assert len(trials) == 60 and sorted(t.number for t in trials) == list(range(60))
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}


def _die_mid_trial(url: str, name: str, run_path: str) -> None:
    storage = open_storage(url, heartbeat=1, on_stale=StaleTrialHandler())
    study = optuna.load_study(study_name=name, storage=storage)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("run", "s-t0:v1")
        trial.set_user_attr("run_path", run_path)
        time.sleep(1.5)  # a heartbeat or two
        os.kill(os.getpid(), signal.SIGKILL)
        return 0.0

    study.optimize(objective, n_trials=1)


def test_heartbeat_fails_a_killed_trial_retries_it_and_marks_its_run(tmp_path: Path):
    url = _sqlite(tmp_path)
    open_storage(url)
    optuna.create_study(storage=url, study_name="s", direction="maximize")
    run = RunStore(tmp_path / "runs").create("s-t0")
    run.write("trial.json", {"study": "s", "trial": 0})
    run.set_status("running")
    proc = mp.get_context("spawn").Process(target=_die_mid_trial, args=(url, "s", str(run.path.resolve())))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    storage = open_storage(url, heartbeat=1, on_stale=StaleTrialHandler())
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING  # nobody has noticed yet
    time.sleep(3.5)  # past the grace period (3 heartbeats)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # a new trial first fails stale ones
    first, retry = study.trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == first.params
    assert retry.system_attrs["failed_trial"] == 0
    assert run.status()["state"] == "failed" and "heartbeat" in run.status()["error"]


def test_space_round_trips_through_the_study_record(tmp_path: Path):
    storage = open_storage(_sqlite(tmp_path))
    req = _request("r")
    studies.create(storage, req)
    study = studies.load(storage, "r")
    assert Space.from_dict(studies.meta_of(study).space).to_dict() == req.meta.space
    with pytest.raises(CnnkitError, match="no study named 'nope' in this storage \\(studies: r\\)"):
        studies.load(storage, "nope")
