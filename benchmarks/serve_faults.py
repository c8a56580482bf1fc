"""Fault and overload scenarios for ``cnnkit serve`` (issue 17), run by ``serve_load.py --faults``.

Each scenario starts its own server with the defaults (``--workers auto``), loads it with wrk
(or the asyncio client where per-status latencies are needed) and prints one line of figures:
- kill9: ``kill -9`` of one worker under c=16 load; failed requests (only in-flight ones may)
  and whether the worker came back;
- sigterm: SIGTERM to the server under load; exit code, seconds to exit, requests the workers
  accepted and answered (failed: accepted but cut off);
- overload: 256 connections; accepted req/s, shed (503 + Retry-After) count, p99 of accepted;
- slow: one client sending its body 1 byte/s plus 100 idle keep-alive connections beside c=16;
- admin: loading a new version through the admin endpoint under c=16 load; failed requests.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOKEN = "bench-admin-token"


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def workers(pid: int) -> list[int]:
    """uvicorn's worker processes (the supervisor's children that run Python, not its helpers)."""
    found = []
    for c in children(pid):
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing" in cmd and b"resource_tracker" not in cmd:
            found.append(c)
    return found


def ready(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status == 200
    except OSError:
        return False


def _later(seconds: float, action: Callable[[], Any], out: dict[str, Any]) -> threading.Thread:
    def go() -> None:
        time.sleep(seconds)
        out["result"] = action()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def kill9(ctx: dict[str, Any]) -> dict[str, Any]:
    proc, port = ctx["start"]({})
    try:
        before = workers(proc.pid)
        out: dict[str, Any] = {}
        t = _later(3.0, lambda: (os.kill(before[0], signal.SIGKILL), before[0])[1] if before else None, out)
        r = ctx["measure"](port, 16, 10.0)
        t.join()
        deadline = time.time() + 60
        while time.time() < deadline and not (len(workers(proc.pid)) == len(before) and ready(port)):
            time.sleep(0.5)
        after = workers(proc.pid)
        return {**r, "workers_before": len(before), "killed": out.get("result"), "workers_after": len(after),
                "replaced": len(after) == len(before) and out.get("result") not in after, "ready_after": ready(port)}
    finally:
        ctx["stop"](proc)


def sigterm(ctx: dict[str, Any]) -> dict[str, Any]:
    """wrk keeps sending after the server has gone, so its socket errors count requests no server
    could have accepted; what matters is the workers' own count (accepted vs answered) in the log."""
    proc, port = ctx["start"]({})
    out: dict[str, Any] = {}
    t = _later(4.0, lambda: (os.kill(proc.pid, signal.SIGTERM), time.perf_counter())[1], out)
    r = ctx["measure"](port, 16, 8.0)
    t.join()
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        ctx["stop"](proc)
        code = None
    stopped = re.findall(r"stopped: (\d+) request\(s\) accepted, (\d+) answered, (\d+) cut off",
                         ctx["log_of"](port).read_text())
    accepted, answered, cut = (sum(int(row[i]) for row in stopped) for i in range(3))
    return {**r, "exit_code": code, "seconds_to_exit": round(time.perf_counter() - out["result"], 2)
            if code is not None else None, "grace_period_s": 10, "workers_stopped": len(stopped),
            "accepted": accepted, "answered": answered, "failed_requests": cut}


def overload(ctx: dict[str, Any]) -> dict[str, Any]:
    proc, port = ctx["start"]({})
    try:
        return ctx["by_status"](port, 256, 10.0)
    finally:
        ctx["stop"](proc)


async def _slow_and_idle(port: int, body: bytes, stop: asyncio.Event) -> dict[str, Any]:
    idle = []
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=cnnkitbenchboundary\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    for _ in range(100):  # each sends one request, then sits idle on its keep-alive connection
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body)
        await reader.readuntil(b"\r\n\r\n")
        idle.append(writer)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    sent = 0
    while not stop.is_set() and sent < len(body):
        writer.write(body[sent:sent + 1])
        sent += 1
        await asyncio.sleep(1.0)
    for w in [*idle, writer]:
        w.close()
    return {"idle_connections": len(idle), "slow_bytes_sent": sent}


def slow(ctx: dict[str, Any]) -> dict[str, Any]:
    proc, port = ctx["start"]({})
    try:
        alone = ctx["measure"](port, 16, 8.0)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        result: dict[str, Any] = {}

        def side() -> None:
            result.update(loop.run_until_complete(_slow_and_idle(port, ctx["body"], stop)))

        t = threading.Thread(target=side, daemon=True)
        t.start()
        time.sleep(2.0)
        beside = ctx["measure"](port, 16, 8.0)
        loop.call_soon_threadsafe(stop.set)
        t.join(timeout=10)
        return {"alone": alone, "beside_slow_and_idle": beside, **result}
    finally:
        ctx["stop"](proc)


def admin(ctx: dict[str, Any]) -> dict[str, Any]:
    runs = Path(ctx["tmp"]) / "admin-runs"
    src = Path(ctx["run_path"])
    shutil.copytree(src.parent, runs / src.parent.name)
    shutil.copytree(src, runs / src.parent.name / "v99")
    proc, port = ctx["start"]({"runs_dir": str(runs), "run": str(runs / src.parent.name / src.name)})
    try:
        out: dict[str, Any] = {}

        def load() -> Any:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/models", method="POST",
                                         data=json.dumps({"run": f"{src.parent.name}:v99"}).encode(),
                                         headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
            start = time.perf_counter()
            with urllib.request.urlopen(req, timeout=120) as r:
                return {"status": r.status, "seconds": round(time.perf_counter() - start, 2)}

        t = _later(3.0, load, out)
        r = ctx["measure"](port, 16, 12.0)
        t.join()
        return {**r, "admin_load": out.get("result")}
    finally:
        ctx["stop"](proc)


SCENARIOS = {"kill9": kill9, "sigterm": sigterm, "overload": overload, "slow": slow, "admin": admin}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(name: str, r: dict[str, Any]) -> str:
    return f"fault {name:9s} " + json.dumps(r, default=str)


def errors_of(r: dict[str, Any]) -> int:
    """Failed requests in a wrk result: non-2xx plus socket errors (connect, read, write, timeout)."""
    counts = [int(n) for n in re.findall(r"\d+", r.get("socket_errors", ""))]
    return int(r.get("non_2xx", 0)) + sum(counts)
