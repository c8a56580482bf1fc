"""Hyperband pruning vs none: trials finished in the same budget, with the same sampler seed.

Two studies, one after the other, each given --minutes: `--pruner hyperband` and `--pruner none`
(TPE, same --seed, same data and space). The space is the model's default without the epochs
parameter, so every trial may train --epochs epochs and only the pruner cuts it short (the
setting Hyperband is made for). A trial counts when it ended (complete or pruned) within the
budget, measured from the study's first trial.

`--width W` also takes the model's width out of the space (every trial builds width W). The
count of trials then measures what the pruner saves: in the full space, an epoch of width 64
costs ~9x one of width 16, so the count also depends on which widths TPE happens to favour in
each arm (with pruning it learns from first epochs, where wide models lead).

    python benchmarks/tune_pruning.py --minutes 20 --workers 2
    python benchmarks/tune_pruning.py --minutes 20 --workers 2 --width 16
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
    p.add_argument("--width", type=int, default=None, help="build every trial at this width instead of searching it")
    args = p.parse_args()
    env, tag = environment(args), stamp()
    print(f"machine: {machine()}")
    budget = args.minutes * 60
    space = Path(tempfile.mkdtemp()) / "space.yaml"
    fixed_width = args.width is not None
    space.write_text(SPACE + ("  width: null\n" if fixed_width else ""))
    fixed = ["--model-kwargs", f"width={args.width}"] if fixed_width else []
    rows = []
    for pruner in ("hyperband", "none"):
        study = f"pruning-{pruner}-{tag}"
        out = cnnkit(env, "tune", "--data", args.data, "--model", args.model, *fixed, "--limit", str(args.limit),
                     "--epochs", str(args.epochs), "--space", str(space), "--seed", str(args.seed), "--study", study,
                     "--pruner", pruner, "--workers", str(args.workers), "--timeout", str(budget))
        done = finished_within(out, budget)
        epochs = sum(t["epochs"] or 0 for t in done)
        seconds = sum(t["seconds"] or 0 for t in done)
        rows.append((pruner, len(done), sum(t["state"] == "pruned" for t in done), out["best_value"], study,
                     epochs / max(1, len(done)), seconds / max(1, epochs)))
    space_name = f"width fixed at {args.width}" if fixed_width else "width searched"
    print(f"\n{'pruner':>10} {'finished':>9} {'pruned':>7} {'best val':>9} {'epochs/trial':>13} {'s/epoch':>8}  study"
          f"   ({args.minutes:g} min each, {args.workers} workers, {space_name})")
    for pruner, n, pruned, best, study, per_trial, per_epoch in rows:
        best_s = "-" if best is None else f"{best:.4f}"
        print(f"{pruner:>10} {n:>9} {pruned:>7} {best_s:>9} {per_trial:>13.2f} {per_epoch:>8.1f}  {study}")
    ratio = rows[0][1] / rows[1][1] if rows[1][1] else float("inf")
    print(f"hyperband / none: {ratio:.2f}x the finished trials")


if __name__ == "__main__":
    main()
