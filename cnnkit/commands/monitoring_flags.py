"""The prediction-log and drift flags shared by ``cnnkit serve`` and ``cnnkit gradio`` (not a verb)."""
from __future__ import annotations

import argparse
from typing import Any


def add_monitoring_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("prediction logs and drift")
    g.add_argument("--log-predictions", metavar="DIR",
                   help="append one JSON line per answered image to DIR (read it with cnnkit monitor)")
    g.add_argument("--log-inputs", action="store_true", help="with --log-predictions: a PNG thumbnail of what the model saw")
    g.add_argument("--log-max-file-mb", type=float, default=16.0, help="start a new log file past this size (default: 16)")
    g.add_argument("--log-max-total-mb", type=float, default=256.0,
                   help="delete the oldest log files beyond this total (default: 256)")
    g.add_argument("--drift-window", type=int, default=500,
                   help="recent images compared with the run's reference statistics (default: 500)")
    g.add_argument("--drift-threshold", type=float, default=0.25,
                   help="PSI that turns the drift alert on; off again below 0.8 x this (default: 0.25)")
    g.add_argument("--no-drift", action="store_true", help="no drift scores on /metrics")


def monitoring_from_args(args: argparse.Namespace) -> Any:
    """Validated Monitoring settings; an unwritable log folder is refused here, before any worker starts."""
    from cnnkit.errors import CnnkitError
    from cnnkit.serve.settings import Monitoring

    if args.log_inputs and not args.log_predictions:
        raise CnnkitError("--log-inputs goes with --log-predictions DIR")
    log_dir = None
    if args.log_predictions:
        from cnnkit.serve.predlog import check_writable

        log_dir = str(check_writable(args.log_predictions).resolve())
    return Monitoring(log_dir=log_dir, log_inputs=args.log_inputs, max_file_mb=args.log_max_file_mb,
                      max_total_mb=args.log_max_total_mb, drift=not args.no_drift, drift_window=args.drift_window,
                      drift_threshold=args.drift_threshold)
