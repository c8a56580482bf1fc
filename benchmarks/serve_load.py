"""Load test: cnnkit serve (torch, onnx) against the tutorials' Flask server, one 28x28 PNG per request.

Starts each server itself on 127.0.0.1, sends ``POST /predict`` with one multipart PNG (an
MNIST test digit) at concurrency 1, 16 and 64 with ``wrk`` (Debian package; a small asyncio
client is the fallback), and prints req/s, p50 and p99 for each. ``--soak-seconds N`` then runs
N seconds of load against the torch server and reports its memory (RSS of all its processes)
before and after. Needs a quiet machine: every server and the load generator share the cores.

    python benchmarks/serve_load.py mnist-airbench --runs-dir /tmp/serve-runs --duration 15 --soak-seconds 300
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # serve_faults beside this file
BOUNDARY = "cnnkitbenchboundary"


def digit_png(data_dir: str) -> bytes:
    from PIL import Image

    from cnnkit.data.builtins import load_builtin

    test = load_builtin("mnist", Path(data_dir), download=False).test
    buf = io.BytesIO()
    Image.fromarray(test.images[0, 0].numpy()).save(buf, "PNG")
    return buf.getvalue()


def multipart(png: bytes) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"digit.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    return head + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until ``url`` answers: 200 from a readiness URL (503 means some worker is not warm yet),
    any HTTP answer from another (405 for GET /predict on Flask)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            if not url.endswith("/ready"):
                return
            time.sleep(0.1)
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def start(cmd: list[str], ready_url: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a server in its own process group; its output goes to ``log`` (a pipe nobody reads
    would fill up and stall a server that logs every request, as Flask's does)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_ready(ready_url, proc, log)
    return proc


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (uvicorn's workers), in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total / 1024


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


# One load thread, as issue 17 measures (wrk -t1 -c16): on this 2-core machine a second wrk thread
# takes CPU from the server under test (cnnkit c=16 measured ~2,400 req/s with -t2, ~2,600 with -t1).
WRK_THREADS = 1


def run_wrk(url: str, body_file: Path, conns: int, seconds: float) -> dict[str, float]:
    script = body_file.with_suffix(".lua")
    script.write_text(f'local f = io.open("{body_file}", "rb")\nwrk.method = "POST"\nwrk.body = f:read("*a")\nf:close()\n'
                      f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n')
    threads = WRK_THREADS
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


async def _client(host: str, port: int, request: bytes, deadline: float, latencies: list[float], status: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            status.append(int(head.split(b" ", 2)[1]))
            if status[-1] == 503 and not re.search(rb"(?i)retry-after:", head):
                status[-1] = -503  # shed without Retry-After: counted apart
            if re.search(rb"(?i)connection:\s*close", head):
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


def run_python(url: str, body: bytes, conns: int, seconds: float) -> dict[str, float]:
    """Fallback load generator (keep-alive HTTP/1.1, closed loop); slower than wrk at high rates."""
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    status: list[int] = []

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(_client(host, port, request, deadline, latencies, status) for _ in range(conns)))

    start = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - start
    ok = sorted(t for t, s in zip(latencies, status) if s == 200)
    lat = sorted(latencies)

    def pick(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")

    return {"rps": len(lat) / elapsed, "p50_ms": pick(lat, 0.50), "p99_ms": pick(lat, 0.99),
            "non_2xx": sum(1 for s in status if s >= 300 or s < 0), "socket_errors": "",
            "accepted_rps": len(ok) / elapsed, "accepted_p50_ms": pick(ok, 0.50), "accepted_p99_ms": pick(ok, 0.99),
            "shed_503_retry_after": status.count(503), "shed_503_without_retry_after": status.count(-503),
            "other_non_2xx": sum(1 for s in status if s not in (200, 503, -503))}


def measure(url: str, body: bytes, body_file: Path, conns: int, seconds: float) -> dict[str, float]:
    if shutil.which("wrk"):
        return run_wrk(url, body_file, conns, seconds)
    return run_python(url, body, conns, seconds)


def soak(url: str, body: bytes, body_file: Path, pid: int, seconds: float, name: str) -> dict:
    """Load for ``seconds`` in windows of up to 60 s; RSS after the first window vs the end."""
    windows, rss = [], [rss_mb(pid)]
    left = seconds
    while left > 0:
        r = measure(url, body, body_file, 16, min(60.0, left))
        left -= min(60.0, left)
        windows.append(r)
        rss.append(rss_mb(pid))
    first, last = windows[0], windows[-1]
    growth = (rss[-1] - rss[1]) / rss[1] * 100 if len(rss) > 2 else float("nan")
    out = {"seconds": seconds, "rss_mb": [round(v, 1) for v in rss], "rss_growth_after_first_window_pct": round(growth, 2),
           "first_window": first, "last_window": last, "errors": sum(w["non_2xx"] for w in windows),
           "socket_errors": [w["socket_errors"] for w in windows if w["socket_errors"]]}
    print(f"soak {name} {seconds:.0f} s at c=16: first window {first['rps']:.0f} req/s p50 {first['p50_ms']:.2f} "
          f"p99 {first['p99_ms']:.2f} ms | last {last['rps']:.0f} req/s p50 {last['p50_ms']:.2f} p99 {last['p99_ms']:.2f} ms"
          f" | RSS {rss[0]:.1f} -> {rss[1]:.1f} -> {rss[-1]:.1f} MB ({growth:+.2f}% after the first window), "
          f"errors {out['errors']} {out['socket_errors']}", flush=True)
    return out


def run_faults(args: argparse.Namespace, body: bytes, env: dict[str, str]) -> dict:
    import serve_faults as faults

    names = list(faults.SCENARIOS) if args.faults == "all" else args.faults.split(",")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body.bin"
        body_file.write_bytes(body)
        from cnnkit.runs import RunStore

        run_path = str(RunStore(args.runs_dir).get(args.run).path)

        def start_server(over: dict) -> tuple[subprocess.Popen, int]:
            port = faults.free_port()
            a = argparse.Namespace(**{**vars(args), **over})
            cmd = [c.replace("{port}", str(port)) for c in servers(a)["cnnkit-torch"]]
            return start(cmd, f"http://127.0.0.1:{port}/v2/health/ready", {**env, "CNNKIT_ADMIN_TOKEN": faults.TOKEN},
                         ctx["log_of"](port)), port

        ctx = {"start": start_server, "stop": stop, "body": body, "tmp": tmp, "run_path": run_path,
               "log_of": lambda port: Path(tmp) / f"fault-{port}.log",
               "measure": lambda port, c, s: measure(f"http://127.0.0.1:{port}/predict", body, body_file, c, s),
               "by_status": lambda port, c, s: run_python(f"http://127.0.0.1:{port}/predict", body, c, s)}
        for name in names:
            r = faults.SCENARIOS[name](ctx)
            if "failed_requests" not in r and ("socket_errors" in r or "non_2xx" in r):
                r["failed_requests"] = faults.errors_of(r)
            results[name] = r
            print(faults.summary(name, r), flush=True)
    return results


def servers(args: argparse.Namespace) -> dict[str, list[str]]:
    py = sys.executable
    runs = ["--runs-dir", args.runs_dir] if args.runs_dir else []
    data = ["--data-dir", args.data_dir]
    # Only what was asked for: by default the server runs as a user starts it (--workers auto).
    tuning = [flag for name in ("workers", "threads", "max_wait_ms") if getattr(args, name) is not None
              for flag in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]
    serve = [py, "-m", "cnnkit", "serve", args.run, *runs, *data, *tuning]
    return {
        "flask-baseline": [py, str(HERE / "flask_baseline.py"), args.run, *runs, "--port", "{port}"],
        "cnnkit-torch": [*serve, "--backend", "torch", "--port", "{port}"],
        "cnnkit-onnx": [*serve, "--backend", "onnx", "--port", "{port}"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="an MNIST run (NAME, NAME:vN or path)")
    p.add_argument("--runs-dir")
    p.add_argument("--data-dir", default=os.environ.get("CNNKIT_DATA") or str(HERE.parents[1] / "shared" / "data"))
    p.add_argument("--duration", type=float, default=15.0, help="seconds per measurement (default: 15)")
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--workers", help="cnnkit serve --workers (default: the server's, auto)")
    p.add_argument("--threads", help="cnnkit serve --threads (default: the server's, auto)")
    p.add_argument("--max-wait-ms", type=float)
    p.add_argument("--warmup-seconds", type=float, default=0.0,
                   help="client-side warm-up before measuring (default: 0: measured right after ready, cold)")
    p.add_argument("--faults", default="",
                   help="then run these fault scenarios on cnnkit-torch: kill9,sigterm,overload,slow,admin (or all)")
    p.add_argument("--only", help="comma-separated subset of flask-baseline,cnnkit-torch,cnnkit-onnx")
    p.add_argument("--soak-seconds", type=float, default=0.0,
                   help="then load each cnnkit server this long at c=16 in 60 s windows: RSS before/after, "
                        "first and last window percentiles")
    p.add_argument("--port", type=int, default=8790)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    body = multipart(digit_png(args.data_dir))
    env = {**os.environ, "CNNKIT_DATA": args.data_dir}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body.bin"
        body_file.write_bytes(body)
        chosen = servers(args)
        names = args.only.split(",") if args.only else list(chosen)
        for name in names:
            port = args.port
            cmd = [c.replace("{port}", str(port)) for c in chosen[name]]
            url = f"http://127.0.0.1:{port}/predict"
            ready = f"http://127.0.0.1:{port}/v2/health/ready" if "cnnkit" in name else url
            proc = start(cmd, ready, env, Path(tmp) / f"{name}.log")
            try:
                if args.warmup_seconds:
                    measure(url, body, body_file, 4, args.warmup_seconds)
                results[name] = {}
                for conns in (int(c) for c in args.concurrency.split(",")):
                    r = measure(url, body, body_file, conns, args.duration)
                    results[name][f"c{conns}"] = r
                    print(f"{name:15s} c={conns:<3d} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                          f"p99 {r['p99_ms']:7.2f} ms  non-2xx {r['non_2xx']} {r['socket_errors']}", flush=True)
                if args.soak_seconds and name.startswith("cnnkit"):
                    results[f"soak-{name}"] = soak(url, body, body_file, proc.pid, args.soak_seconds, name)
            finally:
                stop(proc)
    if args.faults:
        results["faults"] = run_faults(args, body, env)
    base = results.get("flask-baseline", {}).get("c16")
    for name in ("cnnkit-torch", "cnnkit-onnx"):
        if base and name in results and "c16" in results[name]:
            r = results[name]["c16"]
            print(f"{name} vs flask at c=16: {r['rps'] / base['rps']:.1f}x req/s; p99 {r['p99_ms']:.1f} ms "
                  f"vs flask p50 {base['p50_ms']:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
