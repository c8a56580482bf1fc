"""``cnnkit monitor LOGDIR --run RUN``: the served traffic's drift, class mix and least confident inputs."""
from __future__ import annotations

import argparse

from cnnkit.cli import add_runs_dir


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("monitor", help="one HTML page from a server's prediction logs: drift over time, class mix, "
                                         "low confidence, least confident inputs")
    p.add_argument("log_dir", metavar="LOGDIR", help="the folder of cnnkit serve --log-predictions")
    p.add_argument("--run", required=True, metavar="RUN", help="the served run (its reference.json is the baseline)")
    p.add_argument("--out", metavar="FILE.html", help="where to write the page (default: LOGDIR/monitor.html)")
    p.add_argument("--drift-window", type=int, metavar="N", help="images per window, as served (default: 500)")
    p.add_argument("--drift-threshold", type=float, metavar="PSI", help="alert threshold, as served (default: 0.25)")
    add_runs_dir(p)
    p.add_argument("--json", action="store_true", help="print the summary figures as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.serve.monitor_report import monitor

    s, path = monitor(args.log_dir, args.run, args.runs_dir, args.out, args.drift_window, args.drift_threshold)
    worst = max(s["max_psi"].items(), key=lambda kv: kv[1], default=("none", 0.0))
    emit(args, s, f"{s['model']}: {s['images']:,} answers, {s['windows_scored']} windows scored, "
                  f"{s['windows_alerting']} alerting (worst {worst[0]} PSI {worst[1]:.3f}); "
                  f"low confidence {100 * s['low_confidence']['share']:.1f}%; page: {path}")
    return 0
