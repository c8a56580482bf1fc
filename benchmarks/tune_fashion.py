"""Tuned vs default `cnn` on Fashion-MNIST: a fixed tuning budget, then the best config retrained.

1. the default configuration: `cnnkit train --data fashion-mnist --model cnn` (same --limit, seed);
2. `cnnkit tune` for --minutes with --workers processes (TPE + Hyperband, seeded);
3. `cnnkit tune show` (the plots) and `cnnkit train --from-study` (the best trial, retrained).
Prints validation accuracy (default vs best trial vs retrained) and test accuracy (default vs
retrained; the test set is never used to choose). The tuning budget is --minutes; the two
trainings come on top of it.

    python benchmarks/tune_fashion.py --minutes 20 --workers 2
"""
from __future__ import annotations

from tune_common import base_parser, cnnkit, environment, machine, stamp


def main() -> None:
    p = base_parser(__doc__, minutes=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=10000, help="training images (default 10000: many trials per hour on a CPU)")
    p.add_argument("--epochs", type=int, default=8, help="the default run's epochs and the trials' most (default 8)")
    p.add_argument("--storage", default=None, help="study storage URL (default: SQLite under --runs-dir)")
    args = p.parse_args()
    env, study = environment(args), f"fashion-cnn-{stamp()}"
    data = ("--data", "fashion-mnist", "--model", "cnn", "--limit", str(args.limit), "--seed", str(args.seed))
    storage = ("--storage", args.storage) if args.storage else ()
    print(f"machine: {machine()}")

    default = cnnkit(env, "train", *data, "--epochs", str(args.epochs), "--name", f"{study}-default", "--no-progress")
    tuned = cnnkit(env, "tune", *data, "--epochs", str(args.epochs), "--study", study, *storage,
                   "--workers", str(args.workers), "--timeout", str(args.minutes * 60))
    shown = cnnkit(env, "tune", "show", study, *storage)
    best = cnnkit(env, "train", "--from-study", study, *storage, "--no-progress")

    c = tuned["counts"]
    print(f"\nstudy {study}: {args.minutes:g} min budget ({tuned['seconds']:.0f}s wall), {args.workers} workers; "
          f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed")
    print(f"{'':28} {'val acc':>8} {'test acc':>9}  run")
    print(f"{'default cnn config':28} {default['val_accuracy']:>8.4f} {default['test_accuracy']:>9.4f}  {default['run']}")
    print(f"{'best trial':28} {tuned['best_value']:>8.4f} {'-':>9}  {tuned['best_run']}")
    print(f"{'best config, retrained':28} {best['val_accuracy']:>8.4f} {best['test_accuracy']:>9.4f}  {best['run']}")
    print(f"best params: {tuned['best_params']}")
    print(f"tuned beats default on validation: {tuned['best_value'] > default['val_accuracy']}; "
          f"retrained beats default on test: {best['test_accuracy'] > default['test_accuracy']}")
    for name, path in shown.get("plots", {}).items():
        print(f"plot {name}: {path}")
    for name, why in shown.get("plots_skipped", {}).items():
        print(f"plot {name} skipped: {why}")


if __name__ == "__main__":
    main()
