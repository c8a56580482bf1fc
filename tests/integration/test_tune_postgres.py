"""Studies shared through a real PostgreSQL server: concurrent workers, and a worker killed mid-trial.

The fixture starts a throwaway server on 127.0.0.1 (a free port, a temporary data folder,
trust authentication) from Debian's ``postgresql`` package, which ``.ci/postgres.sh`` installs.
Without the server binaries these tests fail; they are never skipped.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

import cnnkit
from cnnkit.runs import RunStore
from tests.unit.test_tune_objective import tiny_digits

pytestmark = pytest.mark.slow  # a minute or so: trains runs, starts servers or browsers

FINAL = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL}


def _server_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    # Debian keeps the server binaries out of PATH, one folder per major version.
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: run .ci/postgres.sh "
                           "(it installs Debian's postgresql package)")
    return candidates[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(base: Path) -> list[str]:
    """initdb refuses to run as root: as root, run the server as the package's postgres user."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root but there is no 'postgres' user: run .ci/postgres.sh") from None
    os.chown(base, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


def start_postgres() -> tuple[str, Callable[[], None]]:
    """A throwaway server on 127.0.0.1 (free port, temporary folder, trust auth): (URL, stop).

    Raises RuntimeError saying what failed. Also used by benchmarks/tune_scaling.py.
    """
    bindir = _server_bin()
    base = Path(tempfile.mkdtemp(prefix="cnnkit-pg-"))
    prefix = _as_server_user(base)
    data, port = base / "data", _free_port()
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    steps = [
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        [*pg_ctl, "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
         f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100", "start"],
    ]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            log = (base / "server.log").read_text()[-2000:] if (base / "server.log").exists() else ""
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"could not start PostgreSQL ({Path(step[len(prefix)]).name}): {proc.stderr[-2000:]}\n{log}")

    def stop() -> None:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    try:
        url, stop = start_postgres()
    except RuntimeError as exc:
        pytest.fail(str(exc))  # never a skip: CI installs the server with .ci/postgres.sh
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="module")
def digits(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_digits(data_dir, tmp_path_factory.mktemp("digits"))


def _tune_args(digits: Path, study: str, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cnnkit", "tune", "--data", str(digits), "--image-size", "28", "--model", "baseline-cnn",
            "--epochs", "2", "--study", study, "--storage", url, *extra]


def _env(runs: Path) -> dict[str, str]:
    return {**os.environ, "CNNKIT_RUNS": str(runs), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_two_workers_share_one_study(postgres_url: str, digits: Path, tmp_path: Path):
    # Two separate commands, as on two machines: both race to create the study, both run trials.
    runs = tmp_path / "runs"
    procs = [subprocess.Popen(_tune_args(digits, "shared", postgres_url, "--trials", "2", "--json", "--seed", "0"),
                              env=_env(runs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [_finish(p) for p in procs]
    for code, _, err in results:
        assert code == 0, err[-3000:]
    trials = optuna.load_study(study_name="shared", storage=postgres_url).get_trials()
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(4))  # unique trial numbers, none lost
    assert {t.state for t in trials} <= FINAL - {optuna.trial.TrialState.FAIL}
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both commands ran trials
    assert len({t.user_attrs["run"] for t in trials}) == 4  # one run per trial
    shown = subprocess.run([sys.executable, "-m", "cnnkit", "tune", "show", "shared", "--storage", postgres_url,
                            "--json", "--no-plots"], env=_env(runs), capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    best = max((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert summary["best_trial"] == best.number and summary["best_value"] == pytest.approx(best.value)
    assert summary["counts"]["complete"] + summary["counts"]["pruned"] == 4
    assert cnnkit.load(summary["best_run"], runs_dir=str(runs)).model is not None


def _running_trial_with_run(url: str, study: str, deadline: float) -> optuna.trial.FrozenTrial:
    """Wait until some trial is training (its run exists); that is the one to kill."""
    storage = optuna.storages.RDBStorage(url)  # one connection pool for all the polling
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
        except KeyError:  # not created yet
            trials = []
        for t in trials:
            if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("run") and t.user_attrs.get("pid"):
                return t
        time.sleep(0.1)
    raise AssertionError("no trial started training in time")


HEARTBEAT_S = 2  # a trial silent for 3 heartbeats (6 s) is failed


def test_a_worker_killed_mid_trial_leaves_the_study_consistent(postgres_url: str, digits: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(_tune_args(digits, "killed", postgres_url, "--trials", "4", "--workers", "2",
                                       "--heartbeat", str(HEARTBEAT_S), "--pruner", "none"),
                            env=_env(runs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = _running_trial_with_run(postgres_url, "killed", time.monotonic() + 120)
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    code, _, err = _finish(proc)
    assert code == 0, err[-3000:]  # the other worker went on
    assert "was killed (SIGKILL)" in err
    # Run again: the study resumes, and a trial still marked running is failed by its stale heartbeat.
    time.sleep(max(0.0, killed_at + 3 * HEARTBEAT_S + 0.5 - time.monotonic()))
    again = subprocess.run(_tune_args(digits, "killed", postgres_url, "--trials", "1", "--heartbeat", str(HEARTBEAT_S)),
                           env=_env(runs), capture_output=True, text=True, timeout=240, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = optuna.load_study(study_name="killed", storage=postgres_url).get_trials()
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert all(t.state in FINAL for t in trials), [(t.number, t.state) for t in trials]
    dead = trials[victim.number]
    assert dead.state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == dead.params and retries[0].state != optuna.trial.TrialState.FAIL
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) >= 4
    run = RunStore(runs).get(victim.user_attrs["run"])
    assert run.status()["state"] == "failed" and "heartbeat" in run.status()["error"]
