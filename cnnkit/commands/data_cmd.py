"""``cnnkit data check NAME|PATH``: the dataset doctor."""
from __future__ import annotations

import argparse


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("data", help="inspect datasets")
    sub = p.add_subparsers(dest="data_verb", metavar="{check}", parser_class=type(p))
    check = sub.add_parser("check", help="counts, balance, corrupt files, duplicates, leakage, channels, sizes")
    check.add_argument("data", metavar="NAME|PATH", help="built-in dataset name or image folder")
    check.add_argument("--data-dir", help="root of the built-in datasets")
    check.add_argument("--image-size", type=int, help="size images are compared at (folders; default 64)")
    check.add_argument("--channels", type=int, choices=(1, 3), help="force gray or RGB")
    check.add_argument("--val-fraction", type=float, default=0.0, help="also split off validation (default: 0)")
    check.add_argument("--seed", type=int, default=0, help="seed of the split")
    check.add_argument("--skip-bad", action="store_true", help="report unreadable files as a warning, not a problem")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=run_check)
    p.set_defaults(handler=lambda a: p.print_help() or 2)


def run_check(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.config import DataConfig
    from cnnkit.data.check_text import format_report
    from cnnkit.data.checks import diagnose
    from cnnkit.data.sources import load_dataset

    cfg = DataConfig(name=args.data, data_dir=args.data_dir, image_size=args.image_size, channels=args.channels,
                     val_fraction=args.val_fraction, skip_bad=True)
    # Load with skip_bad so every unreadable file is listed; whether they are fatal is the report's call.
    report = diagnose(load_dataset(cfg, seed=args.seed), skip_bad=args.skip_bad)
    emit(args, report.to_dict(), format_report(report))
    return 2 if report.problems else 0
