"""Worker processes with one listening socket each (SO_REUSEPORT), so the kernel spreads the
connections over them.

uvicorn's own ``workers=N`` shares one listening socket among the workers: whichever wakes first
accepts every connection waiting, so the 16 keep-alive connections of a load test (or of a
proxy's pool) all land on one worker and the other cores idle (measured: 742 requests on one
worker, 1 on the other). With SO_REUSEPORT each worker listens on its own socket, bound to the
same port, and the kernel hashes each new connection to one of them.

A worker binds at start but listens only when uvicorn has run the app's startup (the models
loaded and warmed), so no connection waits on a cold worker; it counts as ready (``/v2/health/ready``)
only once it listens, so a client that connects as soon as the server is ready spreads its
connections over every worker (marked at the end of startup instead, the last worker's first
milliseconds were missed: a 16-connection load test once put all 16 on one worker, half the req/s). The supervisor here restarts a
worker that dies (``kill -9``), and on SIGTERM/SIGINT passes SIGTERM to every worker, which
stops accepting, finishes what it accepted within uvicorn's grace period, and exits.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from typing import Any

from cnnkit.errors import CnnkitError

# After the grace period, a worker still running is killed (uvicorn cancels its requests first).
EXIT_MARGIN_S = 5.0
CLEAN_EXITS = (0, -signal.SIGTERM, -signal.SIGINT)


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def _socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def check_port(host: str, port: int) -> None:
    """Refuse a port another server holds (bound without SO_REUSEPORT, so the workers cannot
    silently join someone else's socket group)."""
    try:
        _socket(host, port, reuse_port=False).close()
    except OSError as exc:
        raise CnnkitError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    from cnnkit.serve.server import app_from_env

    class ListeningServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)  # the app's startup, then listen()
            if shared is not None and not self.should_exit:
                shared.mark_ready()

    sock = _socket(host, port, reuse_port=True)  # not listening yet: uvicorn listens after startup
    app = app_from_env()
    app.state.ready_at_startup = False  # marked by ListeningServer instead
    shared = app.state.shared
    ListeningServer(uvicorn.Config(app, host=host, port=port, **options)).run(sockets=[sock])


class WorkerPool:
    """``count`` worker processes serving ``host:port``; blocks in :meth:`run` until a signal."""

    def __init__(self, count: int, host: str, port: int, options: dict[str, Any], grace_s: float) -> None:
        self.count, self.host, self.port, self.options, self.grace_s = count, host, port, options, grace_s
        self.context = multiprocessing.get_context("spawn")  # no fork of a parent holding torch threads
        self.processes: list[Any] = []
        self.stopping = False

    def _start(self) -> Any:
        proc = self.context.Process(target=_worker, args=(self.host, self.port, self.options), daemon=False)
        proc.start()
        return proc

    def _on_signal(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        check_port(self.host, self.port)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.processes = [self._start() for _ in range(self.count)]
            while not self.stopping:
                wait([p.sentinel for p in self.processes], timeout=0.5)
                self._replace_dead()
            return self._stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _replace_dead(self) -> None:
        for i, proc in enumerate(self.processes):
            if proc.is_alive() or self.stopping:
                continue
            if proc.exitcode == 3:  # uvicorn's STARTUP_FAILURE: the app cannot start, every restart would fail
                print(f"cnnkit serve: worker {proc.pid} failed to start; stopping", file=sys.stderr, flush=True)
                self.stopping = True
                return
            print(f"cnnkit serve: worker {proc.pid} died (exit {proc.exitcode}); starting a new one",
                  file=sys.stderr, flush=True)
            self.processes[i] = self._start()

    def _stop(self) -> int:
        for proc in self.processes:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s + EXIT_MARGIN_S
        for proc in self.processes:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        # uvicorn re-raises the signal it caught once it has shut down, so a worker that stopped
        # cleanly ends "killed by SIGTERM"; one that had to be killed ends by SIGKILL.
        return 0 if all(p.exitcode in CLEAN_EXITS for p in self.processes) else 1
