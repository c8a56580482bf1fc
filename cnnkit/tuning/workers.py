"""K worker processes on this machine sharing one study and one trial budget.

Each worker opens the storage itself (with the heartbeat on), loads the study with its own
sampler and runs one trial at a time while the budget lasts: a shared counter hands out
exactly ``--trials`` trials across the workers, and ``--timeout`` stops new trials from
starting. A worker's sampler is seeded from the study seed, its index and the number of
trials the study had when the command started: workers never replay each other's random
draws, a resumed study does not replay its first ones, and the same command on a fresh study
samples the same points. Workers are spawned (not forked): a forked child would share
the parent's database connections and torch's thread pools.
"""
from __future__ import annotations

import functools
import multiprocessing
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from cnnkit.errors import CnnkitError
from cnnkit.tuning.objective import StaleTrialHandler, TrialSetup, run_trial

# Exceptions that fail one trial and let the study go on: bad combinations (a CnnkitError, e.g.
# a batch larger than the data) and numerical or memory trouble (RuntimeError). Anything else
# is a bug: the trial is failed and the worker stops with a traceback.
TRIAL_ERRORS = (CnnkitError, RuntimeError)
UNLIMITED = 2**62


@dataclass
class Plan:
    setup: TrialSetup
    storage_url: str
    heartbeat: int
    sampler: str
    pruner: str
    max_epochs: int
    seed: int | None
    threads: int
    trials: int | None
    deadline: float | None  # time.time() after which no trial starts
    trials_before: int  # trials in the study when the command started (counted once, before the workers)


class Budget(Protocol):
    def claim(self) -> bool: ...


class LocalBudget:
    def __init__(self, trials: int | None) -> None:
        self.left = UNLIMITED if trials is None else trials

    def claim(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class SharedBudget:
    """A trial counter in shared memory: workers claim one trial at a time, never more than N in all."""

    def __init__(self, ctx: Any, trials: int | None) -> None:
        self.left = ctx.Value("q", UNLIMITED if trials is None else trials)

    def claim(self) -> bool:
        with self.left.get_lock():
            if self.left.value <= 0:
                return False
            self.left.value -= 1
            return True


def worker_seed(seed: int | None, index: int, trials_before: int) -> int | None:
    if seed is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([seed, index, trials_before]).generate_state(1)[0])


def sampler_for(plan: Plan, index: int) -> Any:
    """Worker ``index``'s sampler. Its seed must not depend on when this worker process got going:
    counting the study's trials here would race with the other workers' first trials."""
    from cnnkit.tuning.study import make_sampler

    return make_sampler(plan.sampler, worker_seed(plan.seed, index, plan.trials_before))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def announce(out: TextIO, metric: str, study: Any, trial: Any) -> None:
    """One line per finished trial (Optuna's own log lines are turned down)."""
    state = trial.state.name.lower()
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0.0
    if state == "complete":
        what = f"{metric} {trial.value:.4f}"
    elif state == "pruned":
        step = trial.last_step
        what = f"after epoch {step}" + (f" ({metric} {trial.intermediate_values[step]:.4f})" if step is not None else "")
    else:
        reason = trial.user_attrs.get("error") or trial.system_attrs.get("fail_reason") or ""
        what = (str(reason).splitlines() or [""])[0][:200]
    params = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    run = trial.user_attrs.get("run") or "-"
    print(f"trial {trial.number} {state}: {what} [{seconds:.0f}s, run {run}] {params}", file=out, flush=True)


def work(plan: Plan, index: int, budget: Budget, out: TextIO = sys.stderr) -> int:
    """Run trials until the budget or the time is spent; returns how many this worker ran."""
    import optuna
    import torch

    from cnnkit.tuning.storage import open_storage
    from cnnkit.tuning.study import PRUNERS, load

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(plan.threads)
    storage = open_storage(plan.storage_url, plan.heartbeat, StaleTrialHandler())
    study = load(storage, plan.setup.study, sampler_for(plan, index), PRUNERS[plan.pruner](plan.max_epochs))
    objective = functools.partial(run_trial, plan.setup)
    callback = functools.partial(announce, out, plan.setup.metric)
    done = 0
    while (plan.deadline is None or time.time() < plan.deadline) and budget.claim():
        study.optimize(objective, n_trials=1, catch=TRIAL_ERRORS, callbacks=[callback])
        done += 1
    return done


def _entry(plan: Plan, index: int, budget: SharedBudget) -> None:
    try:
        work(plan, index, budget)
    except CnnkitError as exc:
        print(f"cnnkit: error: worker {index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(plan: Plan, workers: int) -> list[int]:
    """Run ``workers`` workers (in this process when there is one); their exit codes."""
    if workers == 1:
        work(plan, 0, LocalBudget(plan.trials))
        return [0]
    ctx = multiprocessing.get_context("spawn")
    budget = SharedBudget(ctx, plan.trials)
    procs = [ctx.Process(target=_entry, args=(plan, i, budget), name=f"cnnkit-tune-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too (same process group); give them time to fail their trials.
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        raise
    return [int(p.exitcode if p.exitcode is not None else 1) for p in procs]
