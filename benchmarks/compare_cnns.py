"""The tutorial baseline CNN against the improved CNN on MNIST and Fashion-MNIST, compared on the
same test images (clean and with the training augmentation applied), with exact McNemar tests.

    python benchmarks/compare_cnns.py --budget tiny     # a minute or two: checks the script works
    python benchmarks/compare_cnns.py --budget short    # a few minutes per dataset on a CPU
    python benchmarks/compare_cnns.py --budget full     # the real comparison (the models' default epochs)

Every step is the real CLI (``cnnkit train`` then ``cnnkit runs compare``); both models get the same
data, seed, epochs and image budget. Prints one JSON line per dataset and a sentence per comparison.
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
MODELS = ("baseline-cnn", "cnn")
# budget -> (training images, epochs); None = all images / the model's default epochs.
BUDGETS = {"tiny": (2000, 1), "short": (20000, 3), "full": (None, None)}


def cnnkit(args: list[str], data_dir: Path, runs_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "cnnkit", *args, "--runs-dir", str(runs_dir), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"cnnkit {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def train(model: str, data: str, limit: int | None, epochs: int | None, seed: int, data_dir: Path, runs_dir: Path) -> dict:
    args = ["train", "--model", model, "--data", data, "--data-dir", str(data_dir), "--seed", str(seed), "--no-progress",
            "--name", f"{data}-{model}"]
    args += ["--limit", str(limit)] if limit else []
    args += ["--epochs", str(epochs)] if epochs else []
    t0 = time.perf_counter()
    out = cnnkit(args, data_dir, runs_dir)
    return {"run": out["run"], "wall_seconds": round(time.perf_counter() - t0, 1), "epochs": out["epochs"],
            "test_accuracy": out["test_accuracy"]}


def compare(data: str, refs: list[str], variants: str, data_dir: Path, runs_dir: Path) -> dict:
    out = cnnkit(["runs", "compare", *refs, "--data-dir", str(data_dir), "--variants", variants], data_dir, runs_dir)
    rows = {v: [{"run": r["run"], "accuracy": round(r["accuracy"], 4), "accuracy_ci": [round(x, 4) for x in r["accuracy_ci"]],
                 "macro_f1": round(r["macro_f1"], 4)} for r in rows] for v, rows in out["metrics"].items()}
    pairs = [{"variant": p["variant"], "a": p["a"], "b": p["b"], "difference": round(p["difference"], 4),
              "p_value": p["p_value"], "significant": p["significant"], "verdict": p["verdict"]} for p in out["pairs"]]
    return {"data": data, "images": out["images"], "metrics": rows, "pairs": pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=tuple(BUDGETS), default="short")
    ap.add_argument("--datasets", default="mnist,fashion-mnist")
    ap.add_argument("--variants", default="clean,augmented")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--runs-dir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--out", type=Path, help="also write all results to this JSON file")
    args = ap.parse_args()
    limit, epochs = BUDGETS[args.budget]
    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="cnnkit-compare-"))
    results = []
    for data in args.datasets.split(","):
        trained = [train(m, data, limit, epochs, args.seed, args.data_dir, runs) for m in MODELS]
        result = {"budget": args.budget, "limit": limit, "trained": trained,
                  **compare(data, [t["run"] for t in trained], args.variants, args.data_dir, runs)}
        results.append(result)
        print(json.dumps(result), flush=True)
        for p in result["pairs"]:
            print(f"{data} [{p['variant']}]: {p['verdict']}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"runs kept in {runs}", flush=True)


if __name__ == "__main__":
    main()
