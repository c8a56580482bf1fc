"""Trials per minute on PostgreSQL: 1 worker vs 2 workers sharing a study.

Each arm is a fresh study with the same fixed-cost trials (a space of lr and weight decay only,
one epoch, no pruning) for --minutes. Each worker gets --threads torch threads (default 1, as if
each worker were its own one-core machine), so the ratio measures what sharing one study costs;
`--threads 0` lets `cnnkit tune` split the cores (cores // workers) instead. Without --storage,
a throwaway PostgreSQL server is started on 127.0.0.1 (Debian's postgresql: .ci/postgres.sh).

    python benchmarks/tune_scaling.py --minutes 10
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tune_common import REPO, base_parser, cnnkit, environment, finished_within, machine, stamp

SPACE = "params:\n  lr: {low: 0.01, high: 0.3, log: true}\n  weight_decay: {low: 1.0e-5, high: 1.0e-3, log: true}\n"


def arms(args, env: dict[str, str], url: str, space: Path) -> list[tuple[int, int, float]]:
    budget, tag = args.minutes * 60, stamp()
    out = []
    for workers in (1, 2):
        summary = cnnkit(env, "tune", "--data", args.data, "--model", args.model, "--limit", str(args.limit),
                         "--epochs", "1", "--space", str(space), "--pruner", "none", "--seed", str(args.seed),
                         "--study", f"scaling-{workers}w-{tag}", "--storage", url, "--workers", str(workers),
                         "--timeout", str(budget), *(("--threads", str(args.threads)) if args.threads else ()))
        n = len(finished_within(summary, budget))
        out.append((workers, n, n / args.minutes))
    return out


def main() -> None:
    p = base_parser(__doc__, minutes=10)
    p.add_argument("--storage", default=None, help="a PostgreSQL URL (default: start a throwaway local server)")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--model", default="cnn")
    p.add_argument("--limit", type=int, default=3000)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (0: cores // workers)")
    args = p.parse_args()
    env = environment(args)
    print(f"machine: {machine()}")
    space = Path(tempfile.mkdtemp()) / "space.yaml"
    space.write_text(SPACE)
    stop = None
    url = args.storage
    if url is None:
        sys.path.insert(0, str(REPO))
        from tests.integration.test_tune_postgres import start_postgres

        url, stop = start_postgres()
    try:
        rows = arms(args, env, url, space)
    finally:
        if stop is not None:
            stop()
    print(f"\n{'workers':>8} {'trials':>7} {'per min':>8}   ({args.minutes:g} min each)")
    for workers, n, tpm in rows:
        print(f"{workers:>8} {n:>7} {tpm:>8.2f}")
    print(f"2 workers / 1 worker: {rows[1][2] / rows[0][2] if rows[0][2] else float('inf'):.2f}x trials per minute")


if __name__ == "__main__":
    main()
