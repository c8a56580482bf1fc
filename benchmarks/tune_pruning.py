"""Hyperband pruning vs none: trials finished in the same budget, with the same sampler seed.

Two studies, one after the other, each given --minutes: `--pruner hyperband` and `--pruner none`
(TPE, same --seed, same data and space). The space is the model's default without the epochs
parameter, so every trial may train --epochs epochs and only the pruner cuts it short (the
setting Hyperband is made for). A trial counts when it ended (complete or pruned) within the
budget, measured from the study's first trial.

    python benchmarks/tune_pruning.py --minutes 20 --workers 2
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from tune_common import base_parser, cnnkit, environment, finished_within, machine, stamp

SPACE = "extends: default\nparams:\n  epochs: null\n"  # every trial gets --epochs; the pruner decides


def main() -> None:
    p = base_parser(__doc__, minutes=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--model", default="cnn")
    p.add_argument("--limit", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=9, help="the trials' most epochs: Hyperband's max resource (default 9)")
    args = p.parse_args()
    env, tag = environment(args), stamp()
    print(f"machine: {machine()}")
    budget = args.minutes * 60
    space = Path(tempfile.mkdtemp()) / "space.yaml"
    space.write_text(SPACE)
    rows = []
    for pruner in ("hyperband", "none"):
        study = f"pruning-{pruner}-{tag}"
        out = cnnkit(env, "tune", "--data", args.data, "--model", args.model, "--limit", str(args.limit),
                     "--epochs", str(args.epochs), "--space", str(space), "--seed", str(args.seed), "--study", study,
                     "--pruner", pruner, "--workers", str(args.workers), "--timeout", str(budget))
        done = finished_within(out, budget)
        rows.append((pruner, len(done), sum(t["state"] == "pruned" for t in done), out["best_value"], study))
    print(f"\n{'pruner':>10} {'finished':>9} {'pruned':>7} {'best val':>9}  study   ({args.minutes:g} min each, {args.workers} workers)")
    for pruner, n, pruned, best, study in rows:
        print(f"{pruner:>10} {n:>9} {pruned:>7} {best if best is None else f'{best:.4f}':>9}  {study}")
    ratio = rows[0][1] / rows[1][1] if rows[1][1] else float("inf")
    print(f"hyperband / none: {ratio:.2f}x the finished trials")


if __name__ == "__main__":
    main()
