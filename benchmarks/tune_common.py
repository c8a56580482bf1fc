"""Shared helpers of the tuning benchmarks (tune_fashion, tune_pruning, tune_scaling): run the real
CLI, read its JSON, count trials finished inside a time budget, describe the machine."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def base_parser(doc: str, minutes: float) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=minutes, help=f"time budget (default: {minutes})")
    p.add_argument("--runs-dir", default=None, help="where the studies and their runs go (default: $CNNKIT_RUNS, else ./runs)")
    p.add_argument("--data-dir", default=None, help="datasets root (default: $CNNKIT_DATA, else ../shared/data)")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed (default: 0)")
    return p


def environment(args: argparse.Namespace) -> dict[str, str]:
    data = args.data_dir or os.environ.get("CNNKIT_DATA") or str(REPO.parent / "shared" / "data")
    runs = args.runs_dir or os.environ.get("CNNKIT_RUNS") or "runs"
    return {**os.environ, "CNNKIT_DATA": data, "CNNKIT_RUNS": str(Path(runs).resolve())}


def cnnkit(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run ``cnnkit ARGS --json``: trial lines stream to our stderr, the JSON result is returned."""
    cmd = [sys.executable, "-m", "cnnkit", *args, "--json"]
    print("$ cnnkit " + " ".join(args), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"cnnkit {' '.join(args)} exited {proc.returncode}")
    return json.loads(proc.stdout)


def finished_within(summary: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
    """Trials (complete or pruned) that ended within ``seconds`` of the study's first trial start.

    ``--timeout`` only stops new trials from starting, so the ones still running at the deadline
    finish later; counting by end time keeps every arm to the same budget.
    """
    rows = [t for t in summary["trials"] if t["state"] in ("complete", "pruned") and t["finished"]]
    if not summary["trials"]:
        return []
    start = min(dt.datetime.fromisoformat(t["started"]) for t in summary["trials"] if t["started"])
    return [t for t in rows if (dt.datetime.fromisoformat(t["finished"]) - start).total_seconds() <= seconds]


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.node()}: {cores} cores, load average {load} at start, {time.strftime('%Y-%m-%d %H:%M')}"


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")
