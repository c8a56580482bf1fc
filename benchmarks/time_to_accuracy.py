"""Time to accuracy of training recipes, in one run on this machine: the new one and the previous best.

For each recipe (benchmarks/recipes/NAME.yaml) it runs the real CLI (`cnnkit train --config`),
then `cnnkit eval RUN --tta`, and prints: wall time, training time, per-epoch seconds (cumulative),
train accuracy and (with --val-fraction) validation accuracy, then test accuracy without and with
test-time augmentation (reported apart), and the machine's load before and after, so a figure
measured on a busy machine can be recognised as such.

    python benchmarks/time_to_accuracy.py                         # cifar10-94 and cifar10-best
    python benchmarks/time_to_accuracy.py cifar10-94 --val-fraction 0.1 --target 0.93
    python benchmarks/time_to_accuracy.py cifar10-94 --set train.epochs=2 --set data.limit=5000   # a quick look

The recipes as written train on all 50,000 images and touch the test set once, at the end; then
there is no validation split and the per-epoch column shows train accuracy only. --val-fraction
holds out a validation split instead (fewer training images: a different experiment, said so).
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
FLAGS = {"train.epochs": "--epochs", "data.limit": "--limit", "train.threads": "--threads", "train.seed": "--seed",
         "train.batch_size": "--batch-size"}


def _cli(args: list[str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cnnkit", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"cnnkit {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), wall


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def run_recipe(name: str, args: argparse.Namespace, runs: Path) -> dict:
    common = ["--data-dir", str(args.data_dir), "--runs-dir", str(runs)]
    extra = []
    if args.val_fraction is not None:
        extra += ["--val-fraction", str(args.val_fraction)]
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in FLAGS:
            raise SystemExit(f"--set supports {', '.join(FLAGS)}; got {key!r}")
        extra += [FLAGS[key], value]
    load_before = _load()
    train, wall = _cli(["train", "--config", str(HERE / "recipes" / f"{name}.yaml"), *common, "--no-progress", "--json",
                        "--name", f"tta-{name}", *extra])
    ref = train["run"]
    run_dir = runs / ref.replace(":", "/")
    history = json.loads((run_dir / "history.json").read_text())
    evaluation, eval_wall = _cli(["eval", ref, *common, "--tta", "--json", "--bootstrap", "100"])
    results = evaluation["results"]
    return {
        "recipe": name, "run": ref, "extra_args": extra, "wall_seconds": round(wall, 1),
        "train_seconds": train["train_seconds"], "epochs": train["epochs"], "history": history,
        "test_accuracy": train["test_accuracy"], "test_accuracy_tta": results["clean+tta"]["accuracy"],
        "eval_tta_wall_seconds": round(eval_wall, 1), "load_before": load_before, "load_after": _load(),
    }


def print_report(r: dict, target: float | None) -> None:
    print(f"\n== {r['recipe']} ({r['run']}; {' '.join(r['extra_args']) or 'recipe as written'})")
    print(f"   {r['load_before']} before, {r['load_after']} after")
    print(f"   {'epoch':>5} {'seconds':>8} {'cumul.':>8} {'train acc':>9} {'val acc':>8}")
    cumul, reached = 0.0, None
    for h in r["history"]:
        cumul += h["seconds"]
        val = h.get("val_accuracy")
        if target is not None and val is not None and val >= target and reached is None:
            reached = (h["epoch"], cumul)
        print(f"   {h['epoch']:>5} {h['seconds']:>8.1f} {cumul:>8.1f} {h['train_accuracy']:>9.4f} "
              f"{'' if val is None else f'{val:.4f}':>8}")
    if target is not None:
        print(f"   val accuracy >= {target}: " + (f"epoch {reached[0]}, {reached[1]:.0f} s" if reached else "not reached"))
    print(f"   test accuracy {r['test_accuracy']:.4f}, with TTA {r['test_accuracy_tta']:.4f}; "
          f"{r['wall_seconds']:.0f} s wall for `cnnkit train` ({r['train_seconds']:.0f} s in the loop, "
          f"{r['epochs']} epochs), + {r['eval_tta_wall_seconds']:.0f} s for `cnnkit eval --tta`", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="*", default=["cifar10-94", "cifar10-best"])
    ap.add_argument("--data-dir", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--runs-dir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--val-fraction", type=float, default=None, help="hold out a validation split for per-epoch accuracy")
    ap.add_argument("--target", type=float, default=None, help="report when val accuracy first reaches this")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help=f"override an option for every recipe ({', '.join(FLAGS)})")
    ap.add_argument("--json", action="store_true", help="also print each result as one JSON line")
    args = ap.parse_args()
    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="cnnkit-tta-"))
    import torch  # only to say what the machine is

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}; {_load()}", flush=True)
    for name in args.recipes:
        r = run_recipe(name, args, runs)
        print_report(r, args.target)
        if args.json:
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
