"""Train a named recipe (benchmarks/recipes/NAME.yaml) with the real CLI and print time and test accuracy.

    python benchmarks/train_recipe.py main            # the README's `cnnkit train` (MNIST, cnn, defaults)
    python benchmarks/train_recipe.py mnist-best fashion-best cifar10-best
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_recipe(name: str, data_dir: Path, runs_dir: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "cnnkit", "train", "--data-dir", str(data_dir), "--runs-dir", str(runs_dir),
           "--no-progress", "--json", "--name", name]
    if name != "main":
        cmd += ["--config", str(HERE / "recipes" / f"{name}.yaml")]
    cmd += extra
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
    m = json.loads(proc.stdout)
    return {"recipe": name, "args": extra, "run": m["run"], "wall_seconds": round(wall, 1), "train_seconds": m["train_seconds"],
            "epochs": m["epochs"], "val_accuracy": m.get("val_accuracy"), "test_accuracy": m["test_accuracy"],
            "test_loss": m["test_loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--data-dir", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--runs-dir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = ap.parse_args()
    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="cnnkit-bench-"))
    for name in args.recipes:
        r = run_recipe(name, args.data_dir, runs, ["--threads", str(args.threads)] if args.threads else [])
        print(json.dumps(r), flush=True)
        print(f"{name}: test accuracy {r['test_accuracy']:.4f} (loss {r['test_loss']:.4f}) in {r['wall_seconds']:.0f}s wall, "
              f"{r['train_seconds']:.0f}s training, {r['epochs']} epochs", flush=True)


if __name__ == "__main__":
    main()
