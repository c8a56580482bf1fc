"""``cnnkit eval RUN``: loss and accuracy of a finished run on a split of its data (or other data)."""
from __future__ import annotations

import argparse


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("eval", help="evaluate a run on its test set (or --data/--split)")
    p.add_argument("run", metavar="RUN", help="NAME, NAME:vN or a path to a run version")
    p.add_argument("--data", help="another dataset or folder with the same classes (default: the run's)")
    p.add_argument("--data-dir", help="root of the built-in datasets")
    p.add_argument("--split", default="test", choices=("test", "val", "train"), help="which split (default: test)")
    p.add_argument("--runs-dir", help="where runs live (default: $CNNKIT_RUNS, else ./runs)")
    p.add_argument("--batch-size", type=int, default=1024, help="evaluation batch size")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.evaluate import evaluate_run

    result = evaluate_run(args.run, args.runs_dir, args.data, args.data_dir, args.split, args.batch_size)
    text = (f"{result['run']} on {result['data']} {result['split']} ({result['images']} images): "
            f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")
    emit(args, result, text)
    return 0
