"""What ``cnnkit tune show`` reports, and the study's plots (matplotlib PNGs, no plotly)."""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnkit.io import write_atomic

STATES = ("complete", "pruned", "fail", "running", "waiting")


def trial_row(trial: Any) -> dict[str, Any]:
    seconds = None
    if trial.datetime_start and trial.datetime_complete:
        seconds = round((trial.datetime_complete - trial.datetime_start).total_seconds(), 2)
    return {
        "number": trial.number, "state": trial.state.name.lower(), "value": trial.value, "params": trial.params,
        "epochs": trial.last_step, "seconds": seconds, "run": trial.user_attrs.get("run"),
        "host": trial.user_attrs.get("host"),
        "error": trial.user_attrs.get("error") or trial.system_attrs.get("fail_reason"),
        "retry_of": trial.system_attrs.get("failed_trial"),
        "started": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "finished": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
    }


def summarize(study: Any, storage: str) -> dict[str, Any]:
    """Best value and params, trial counts by state, and every trial, as plain data."""
    from cnnkit.tuning.study import META_KEY

    meta = study.user_attrs.get(META_KEY, {})
    shared = meta.get("shared", {})
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name.lower() for t in trials)
    best = _best(study)
    return {
        "study": study.study_name, "storage": storage, "direction": study.direction.name.lower(),
        "metric": meta.get("metric"), "data": shared.get("data", {}).get("name"),
        "model": shared.get("model", {}).get("name"),
        "sampler": meta.get("sampler"), "pruner": meta.get("pruner"),
        "best_value": best.value if best else None, "best_params": best.params if best else {},
        "best_trial": best.number if best else None, "best_run": best.user_attrs.get("run") if best else None,
        "counts": {state: counts.get(state, 0) for state in STATES}, "trials": [trial_row(t) for t in trials],
    }


def _best(study: Any) -> Any:
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def format_summary(s: dict[str, Any], top: int = 10) -> str:
    c = s["counts"]
    lines = [f"study {s['study']}: {s['direction']} {s['metric']} of {s['model']} on {s['data']}  ({s['storage']})",
             f"  trials: {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed, {c['running']} running"
             + (f", {c['waiting']} waiting" if c["waiting"] else "")]
    if s["best_trial"] is None:
        lines.append("  no completed trial yet")
        return "\n".join(lines)
    lines.append(f"  best: trial {s['best_trial']}, {s['metric']} {s['best_value']:.4f}, run {s['best_run']}")
    lines += [f"    {k} = {_fmt(v)}" for k, v in s["best_params"].items()]
    done = [t for t in s["trials"] if t["state"] == "complete"]
    done.sort(key=lambda t: t["value"], reverse=s["direction"] == "maximize")
    lines.append(f"  {'TRIAL':>5}  {s['metric']:>12}  {'EPOCHS':>6}  {'SECONDS':>7}  RUN")
    lines += [f"  {t['number']:>5}  {t['value']:>12.4f}  {_fmt(t['epochs']):>6}  {_fmt(t['seconds']):>7}  {t['run']}"
              for t in done[:top]]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def _plotters() -> dict[str, Callable[[Any], Any]]:
    from optuna.visualization import matplotlib as vm

    return {
        "optimization_history": vm.plot_optimization_history,
        "param_importances": vm.plot_param_importances,
        "parallel_coordinate": vm.plot_parallel_coordinate,
        "intermediate_values": vm.plot_intermediate_values,
    }


def save_plots(study: Any, folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """PNG plots of the study in ``folder``: (saved name -> path, skipped name -> why)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    saved: dict[str, str] = {}
    skipped: dict[str, str] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for name, plot in _plotters().items():
        path = folder / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot(study)
        except Exception as exc:  # noqa: BLE001 - e.g. importances need 2+ completed trials; say why, go on
            skipped[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            continue
        fig = getattr(axes, "figure", None) or axes.flat[0].figure
        write_atomic(path, lambda p, fig=fig: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
        plt.close(fig)
        saved[name] = str(path)
    return saved, skipped
