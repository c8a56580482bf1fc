"""PyTorch vs Keras on the same recipe, in one run: test accuracy (95% bootstrap intervals),
exact McNemar on the same test images, seconds per epoch, peak memory.

Recipes: ``mnist`` (``cnnkit train --model cnn``: MNIST, ``cnn`` width 16, 8 epochs; the default job's airbench
is not built for Keras)
and ``cifar10`` (``benchmarks/recipes/cifar10-best.yaml``: ``cnn`` width 32, convs 1-2-3, 20 epochs).
Each training runs in its own process, so its peak RSS is its own. ``--jit`` also trains the Keras
path with an XLA-compiled step (``jit_compile=True``) to show whether it helps on this CPU.

    python benchmarks/frameworks.py                          # both recipes, full budgets
    python benchmarks/frameworks.py --recipes mnist --epochs 2 --limit 20000   # a quick look
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"mnist": None, "cifar10": REPO / "benchmarks" / "recipes" / "cifar10-best.yaml"}


def _train(recipe: str, framework: str, runs_dir: str, data_dir: str | None, epochs: int | None,
           limit: int | None, jit: bool) -> None:
    """Child process: one training; prints a JSON line with the run and the peak RSS."""
    from cnnkit.config import Config, load_yaml, merge
    from cnnkit.training.run import train_run

    raw = load_yaml(RECIPES[recipe]) if RECIPES[recipe] else {}
    given = {"train": {"framework": framework, "progress": False, **({"epochs": epochs} if epochs else {})},
             "data": {**({"data_dir": data_dir} if data_dir else {}), **({"limit": limit} if limit else {})},
             "run": {"runs_dir": runs_dir, "name": f"{recipe}-{framework}{'-jit' if jit else ''}"}}
    if jit:
        import cnnkit.training.keras.loop as keras_loop

        keras_loop.JIT_COMPILE = True
    out = train_run(Config.from_dict(merge(raw, given)))
    epochs_s = [h["seconds"] for h in out.history]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"run": out.run.ref, "s_per_epoch": sum(epochs_s) / len(epochs_s),
                      "first_epoch_s": epochs_s[0], "peak_rss_mb": peak_mb}))


def _child(recipe: str, framework: str, args: argparse.Namespace, jit: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", recipe, framework, "--runs-dir", args.runs_dir]
    cmd += ["--data-dir", args.data_dir] if args.data_dir else []
    cmd += ["--epochs", str(args.epochs)] if args.epochs else []
    cmd += ["--limit", str(args.limit)] if args.limit else []
    cmd += ["--jit"] if jit else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{recipe} in {framework} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", default="mnist,cifar10")
    p.add_argument("--epochs", type=int, help="override the recipes' epochs (both frameworks)")
    p.add_argument("--limit", type=int, help="train on the first N images only")
    p.add_argument("--data-dir")
    p.add_argument("--runs-dir", default=tempfile.mkdtemp(prefix="cnnkit-frameworks-"))
    p.add_argument("--jit", action="store_true", help="also train Keras with jit_compile=True")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _train(*args.child, args.runs_dir, args.data_dir, args.epochs, args.limit, args.jit)
    from cnnkit.evaluation.compare import compare_runs

    print("| recipe | framework | test accuracy (95% CI) | s/epoch | peak RSS | McNemar vs torch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for recipe in args.recipes.split(","):
        trained = {"torch": _child(recipe, "torch", args), "keras": _child(recipe, "keras", args)}
        if args.jit:
            trained["keras-jit"] = _child(recipe, "keras", args, jit=True)
        cmp = compare_runs([t["run"] for t in trained.values()], args.runs_dir, data_dir=args.data_dir)
        rows = {m["run"]: m for m in cmp["metrics"]["clean"]}
        pairs = {pair["b"]: pair for pair in cmp["pairs"] if pair["a"] == trained["torch"]["run"]}
        for fw, t in trained.items():
            m, pair = rows[t["run"]], pairs.get(t["run"])
            lo, hi = m["accuracy_ci"]
            test = f"p = {pair['p_value']:.3g} ({pair['a_only_right']} vs {pair['b_only_right']} images)" if pair else ""
            print(f"| {recipe} | {fw} | {m['accuracy']:.2%} ({lo:.2%}-{hi:.2%}) | {t['s_per_epoch']:.1f} "
                  f"| {t['peak_rss_mb']:,.0f} MB | {test} |", flush=True)


if __name__ == "__main__":
    main()
