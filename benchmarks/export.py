"""Eager PyTorch vs FP32 ONNX vs INT8 ONNX vs pt2, side by side, for finished runs.

For each run: test accuracy (full test set), file size, batch-256 throughput (images/s) and
single-image latency (median and p90, ms), all on the CPU with the same thread count. Timings
are interleaved (a short burst of each backend per round, medians over the rounds) so a busy
machine slows all four alike. The exports come from ``cnnkit export`` (checked, cached in the
run folder); the INT8 one is measured even if it would fail the --max-drop gate.

    python benchmarks/export.py                            # the runs `cnnkit train` and the CIFAR-10 recipe make
    python benchmarks/export.py mnist-airbench cifar10-airbench --threads 2 --rounds 7 --json out.json

Goal (issue 11): INT8 >= 1.5x the FP32 ONNX batch throughput with <= 0.2 points of accuracy lost.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

BATCH = 256
BACKENDS = ("eager", "onnx-fp32", "onnx-int8", "pt2")


def forwards(loaded: Any, data_dir: str | None, threads: int) -> tuple[dict[str, Callable[[np.ndarray], np.ndarray]], dict[str, int]]:
    """name -> forward(normalized float32 batch) -> logits, and name -> file size in bytes."""
    from cnnkit.export.formats import export_run
    from cnnkit.export.onnx import session

    onnx = export_run(loaded, "onnx", data_dir=data_dir)
    int8 = export_run(loaded, "onnx", "int8", data_dir=data_dir, force=True)
    pt2 = export_run(loaded, "pt2", data_dir=data_dir)
    model = loaded.model.eval()
    program = torch.export.load(pt2["path"]).module()
    sessions = {"onnx-fp32": session(Path(onnx["path"]), threads), "onnx-int8": session(Path(int8["path"]), threads)}

    def torch_forward(m: Any) -> Callable[[np.ndarray], np.ndarray]:
        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return m(torch.from_numpy(x)).numpy()
        return run

    def ort_forward(s: Any) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: s.run(None, {"input": x})[0]

    fns = {"eager": torch_forward(model), "onnx-fp32": ort_forward(sessions["onnx-fp32"]),
           "onnx-int8": ort_forward(sessions["onnx-int8"]), "pt2": torch_forward(program)}
    sizes = {"eager": loaded.run.file("model.safetensors").stat().st_size, "onnx-fp32": onnx["bytes"],
             "onnx-int8": int8["bytes"], "pt2": pt2["bytes"]}
    return fns, sizes


def accuracy(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    preds = np.concatenate([fn(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((preds == labels).mean())


def timed(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, seconds: float) -> list[float]:
    """Seconds per call of ``fn(x)`` for about ``seconds`` (at least 3 calls)."""
    out, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(out) < 3:
        t = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t)
    return out


def measure(fns: dict[str, Callable], x_batch: np.ndarray, x_one: np.ndarray, rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    for fn in fns.values():  # warm-up (allocations, oneDNN / ORT kernel selection)
        fn(x_batch), fn(x_one)
    batch_rates: dict[str, list[float]] = {k: [] for k in fns}
    single: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            batch_rates[name].append(len(x_batch) / float(np.median(timed(fn, x_batch, seconds))))
            single[name] += timed(fn, x_one, seconds / 2)
    return {name: {"images_per_s": float(np.median(batch_rates[name])),
                   "latency_ms_p50": 1000 * float(np.percentile(single[name], 50)),
                   "latency_ms_p90": 1000 * float(np.percentile(single[name], 90))} for name in fns}


def bench_run(ref: str, runs_dir: str | None, data_dir: str | None, threads: int, rounds: int, seconds: float) -> dict[str, Any]:
    import cnnkit
    from cnnkit.data.transforms import pipelines_for
    from cnnkit.export.quantize import split_images

    loaded = cnnkit.load(ref, runs_dir)
    fns, sizes = forwards(loaded, data_dir, threads)
    images, labels = split_images(loaded, data_dir, "test")
    pipeline = pipelines_for(loaded.spec["preprocess"])[1]
    x = torch.cat([pipeline(images[i:i + 1000]) for i in range(0, len(images), 1000)]).numpy()
    y = labels.numpy()
    acc = {name: accuracy(fn, x, y) for name, fn in fns.items()}
    speed = measure(fns, np.ascontiguousarray(x[:BATCH]), np.ascontiguousarray(x[:1]), rounds, seconds)
    rows = {name: {"accuracy": acc[name], "bytes": sizes[name], **speed[name]} for name in fns}
    int8, fp32 = rows["onnx-int8"], rows["onnx-fp32"]
    return {"run": loaded.ref, "model": loaded.spec["name"], "data": loaded.config["data"]["name"],
            "test_images": len(y), "threads": threads, "batch": BATCH, "backends": rows,
            "int8_speedup_vs_fp32_onnx": int8["images_per_s"] / fp32["images_per_s"],
            "int8_accuracy_loss_points": 100 * (fp32["accuracy"] - int8["accuracy"]),
            "int8_latency_ratio_vs_fp32_onnx": int8["latency_ms_p50"] / fp32["latency_ms_p50"]}


def table(r: dict[str, Any]) -> str:
    lines = [f"{r['run']} ({r['model']} on {r['data']}, {r['test_images']} test images, {r['threads']} threads)",
             f"  {'backend':<10} {'accuracy':>9} {'size':>10} {'batch-256 img/s':>16} {'1-image p50 ms':>15} {'p90 ms':>8}"]
    for name, b in r["backends"].items():
        lines.append(f"  {name:<10} {100 * b['accuracy']:>8.2f}% {b['bytes'] / 1e6:>8.3f}MB {b['images_per_s']:>16,.0f} "
                     f"{b['latency_ms_p50']:>15.3f} {b['latency_ms_p90']:>8.3f}")
    ok = r["int8_speedup_vs_fp32_onnx"] >= 1.5 and r["int8_accuracy_loss_points"] <= 0.2
    lines.append(f"  INT8 vs FP32 ONNX: {r['int8_speedup_vs_fp32_onnx']:.2f}x batch throughput, "
                 f"{r['int8_accuracy_loss_points']:+.2f} points of accuracy lost, single-image latency x"
                 f"{r['int8_latency_ratio_vs_fp32_onnx']:.2f} -> goal (>= 1.5x, <= 0.2 points) {'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", default=["mnist-airbench", "cifar10-airbench"],
                    help="run references (default: mnist-airbench cifar10-airbench)")
    ap.add_argument("--runs-dir")
    ap.add_argument("--data-dir")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and ONNX Runtime threads (default: all cores)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (medians are reported)")
    ap.add_argument("--seconds", type=float, default=0.6, help="seconds per backend per round")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for ref in args.runs:
        results.append(bench_run(ref, args.runs_dir, args.data_dir, args.threads, args.rounds, args.seconds))
        print(table(results[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
