"""Ablation of the speed-run techniques at a fixed budget: the cifar10-94 recipe with one technique off at a time.

Every variant trains the same images for the same epochs (``--limit``, ``--epochs``) with a held-out
validation split (``--val-fraction``, default 0.1): the figure is validation accuracy, so nothing is
chosen on the test set. Each row says what was switched off and what that cost (or gained).

    python benchmarks/ablate_speedrun.py --limit 10000 --epochs 4
    python benchmarks/ablate_speedrun.py --only full,no-whiten --seeds 0,1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "recipes" / "cifar10-94.yaml"

# name -> the CLI flags that switch one technique off (back to cnnkit's usual choice).
VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no-whiten": ["--whiten", "off"],  # the first conv trains from a random init
    "no-norm-lr-mult": ["--norm-lr-mult", "1"],
    "coupled-wd": ["--no-decoupled-wd", "--weight-decay", "5e-4"],  # cnnkit's usual L2 5e-4
    "no-lookahead": ["--no-lookahead"],
    "random-flips": ["--flip", "random"],
    "zero-padding": ["--pad", "zeros"],
    "no-label-smoothing": ["--label-smoothing", "0"],
    "onecycle": ["--schedule", "onecycle"],
}


def run(variant: str, seed: int, args: argparse.Namespace, runs: Path) -> dict:
    cmd = [sys.executable, "-m", "cnnkit", "train", "--config", str(RECIPE), "--data-dir", str(args.data_dir),
           "--runs-dir", str(runs), "--name", f"ablate-{variant}", "--no-progress", "--json", "--limit", str(args.limit),
           "--epochs", str(args.epochs), "--val-fraction", str(args.val_fraction), "--seed", str(seed), *VARIANTS[variant]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-2000:]}")
    m = json.loads(proc.stdout)
    return {"variant": variant, "seed": seed, "val_accuracy": m["val_accuracy"], "train_seconds": m["train_seconds"],
            "wall_seconds": round(time.perf_counter() - t0, 1), "load": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--runs-dir", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=10000, help="training images (before the validation split)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds; the table shows the mean")
    ap.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants (default: all)")
    args = ap.parse_args()
    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="cnnkit-ablate-"))
    names = args.only.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, list[dict]] = {}
    for name in names:
        for seed in seeds:
            r = run(name, seed, args, runs)
            rows.setdefault(name, []).append(r)
            print(json.dumps(r), flush=True)
    base = sum(r["val_accuracy"] for r in rows.get("full", [])) / len(seeds) if "full" in rows else None
    print(f"\n{args.limit} images (val fraction {args.val_fraction}), {args.epochs} epochs, seeds {args.seeds}")
    print("| variant | val accuracy | vs full | train s |\n| --- | --- | --- | --- |")
    for name, rs in rows.items():
        acc = sum(r["val_accuracy"] for r in rs) / len(rs)
        secs = sum(r["train_seconds"] for r in rs) / len(rs)
        delta = f"{100 * (acc - base):+.2f} pts" if base is not None and name != "full" else ""
        print(f"| {name} | {acc:.4f} | {delta} | {secs:.0f} |")


if __name__ == "__main__":
    main()
