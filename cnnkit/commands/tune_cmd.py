"""``cnnkit tune``: search hyperparameters with Optuna; ``cnnkit tune show NAME``: report a study."""
from __future__ import annotations

import argparse
import signal
import sys

from cnnkit.cli import add_config_flags, add_runs_dir, emit
from cnnkit.config import overrides
from cnnkit.tuning import names  # Optuna-free: the choices without the tuning code


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "tune", help="search hyperparameters with Optuna: pruning, shared studies, best config to a run",
        description="Search learning rate, batch size, optimizer, schedule, regularization, width, augmentation and "
        "epochs for a model with Optuna. Every trial is a run named STUDY-tN. Running it again resumes the study; "
        "the same command on another machine with the same --storage joins it. Training flags set what is not "
        "searched; --epochs is the most a trial trains (the default space searches --epochs/4 to --epochs).")
    p.add_argument("--study", metavar="NAME", help="study name (default: DATA-MODEL); an existing study is resumed")
    p.add_argument("--storage", metavar="URL", help="SQLAlchemy URL of a shared database, e.g. "
                   "postgresql://user:pass@host:5432/db (default: SQLite file RUNS/_studies/optuna.db)")
    p.add_argument("--trials", type=int, metavar="N", help="trials this command runs over all its workers "
                   f"(default: {names.DEFAULT_TRIALS}; unlimited with --timeout)")
    p.add_argument("--timeout", type=float, metavar="S", help="start no new trial after S seconds")
    p.add_argument("--workers", type=int, default=1, metavar="K", help="worker processes sharing the study (default: 1)")
    p.add_argument("--space", metavar="FILE.yaml",
                   help="search space file (format: README, Tuning); default: the model family's space")
    p.add_argument("--sampler", choices=names.SAMPLERS, help=f"seeded by --seed (default: {names.DEFAULT_SAMPLER})")
    p.add_argument("--pruner", choices=names.PRUNERS, help=f"stop poor trials early (default: {names.DEFAULT_PRUNER})")
    metric = names.DEFAULT_METRIC
    p.add_argument("--metric", choices=names.METRICS, help="what trials are compared on "
                   f"(default: {metric}, {names.METRIC_DIRECTIONS[metric]}d)")
    p.add_argument("--heartbeat", type=int, default=names.DEFAULT_HEARTBEAT_S, metavar="S", help="seconds between a "
                   "running trial's heartbeats; a trial silent for 3x this is failed (its worker died) "
                   f"(default: {names.DEFAULT_HEARTBEAT_S})")
    p.add_argument("--config", metavar="FILE.yaml", help="base options file with sections data, model, train")
    p.add_argument("--json", action="store_true", help="print the study's summary as JSON")
    add_config_flags(p, ("data", "model", "train"))
    add_runs_dir(p, "run.runs_dir")
    p.add_argument("--track", dest="run.track", choices=("none", "mlflow"), default=argparse.SUPPRESS,
                   help="mlflow: one MLflow run per trial, nested under a run for the study (extra cnnkit[mlflow])")
    p.add_argument("--tracking-uri", dest="run.tracking_uri", metavar="URI", default=argparse.SUPPRESS,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    p.set_defaults(handler=run_tune)
    sub = p.add_subparsers(dest="tune_verb", metavar="{show}", parser_class=type(p))
    show = sub.add_parser("show", help="best value and params, trial counts, plots of a study")
    show.add_argument("name", metavar="NAME", help="the study")
    show.add_argument("--storage", metavar="URL", help="the study's storage (default: SQLite under the runs dir)")
    add_runs_dir(show)
    show.add_argument("--no-plots", dest="plots", action="store_false", help="do not write the plots")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_study)


def _worker_problems(codes: list[int]) -> int:
    """Warn about workers that did not end cleanly; the exit code they make for the command."""
    status = 0
    for i, code in enumerate(codes):
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            print(f"cnnkit: warning: worker {i} was killed ({name}); its trial is failed by the heartbeat",
                  file=sys.stderr)
        elif code == 130:
            status = max(status, 130)
        elif code != 0:
            status = max(status, code)
    return status


def _quiet_optuna() -> None:
    """Our own one line per trial replaces Optuna's INFO log."""
    try:
        import optuna
    except ImportError:
        return  # cnnkit.tuning.tune says how to install it
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_tune(args: argparse.Namespace) -> int:
    from cnnkit.tuning.summary import format_summary
    from cnnkit.tuning.tune import TuneOptions, tune

    _quiet_optuna()
    explicit = overrides(vars(args), args.config)  # only the options given: the study's stored ones fill the rest
    opts = TuneOptions(study=args.study, storage=args.storage, trials=args.trials, timeout=args.timeout,
                       workers=args.workers, space=args.space, sampler=args.sampler, pruner=args.pruner,
                       metric=args.metric, heartbeat=args.heartbeat)
    summary = tune(opts, explicit, seed_given="seed" in explicit.get("train", {}))
    text = format_summary(summary) + f"\n  in {summary['seconds']:.0f}s with {summary['workers']} worker(s)"
    if summary["best_trial"] is not None:
        text += f"\n  next: cnnkit tune show {summary['study']}   cnnkit train --from-study {summary['study']}"
    if summary.get("mlflow"):
        from cnnkit.training.tracking import summary_line

        text += f"\n  {summary_line(summary['mlflow'])}"
    emit(args, summary, text)
    return _worker_problems(summary["worker_exit_codes"])


def show_study(args: argparse.Namespace) -> int:
    from cnnkit.tuning.summary import format_summary
    from cnnkit.tuning.tune import show

    summary = show(args.name, args.storage, args.runs_dir, args.plots)
    text = format_summary(summary)
    if summary.get("plots"):
        text += "\n  plots: " + ", ".join(summary["plots"].values())
    for name, why in summary.get("plots_skipped", {}).items():
        text += f"\n  no {name} plot: {why}"
    emit(args, summary, text)
    return 0
