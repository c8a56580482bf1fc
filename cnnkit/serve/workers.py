"""Worker processes fed connections in turn by the supervisor, so every worker gets its share.

How connections reach workers decides how fast N workers are together. uvicorn's own
``workers=N`` shares one listening socket: whichever worker wakes first accepts every connection
waiting, so the 16 keep-alive connections of a load test (or of a proxy's pool) all land on one
worker (measured: 742 requests on one, 1 on the other). A socket per worker with SO_REUSEPORT
lets the kernel hash connections to workers, which is fair only on average: 16 connections
split 10/6 or worse in 4 of 11 starts (45% by chance), and a 10/6 split measured 1,700-1,930
req/s where 8/8 gave 2,250 (wrk -t2 -c16, 2 cores). So here, as Node's cluster module does by
default, the supervisor accepts each connection and hands its file descriptor to the next warm
worker in turn over a Unix socket (SCM_RIGHTS); the worker serves it with uvicorn's own HTTP
protocol. 16 connections split 8/8.

A worker takes connections only after the app's startup (models loaded and warmed) and counts
as ready (``/v2/health/ready``) only then; the server listens once every worker is ready, so
the first clients' keep-alive connections are not all dealt to the first worker to warm up.
The supervisor restarts a worker that dies (``kill -9``), gives its share to the others
meanwhile, and on SIGTERM/SIGINT closes the listening socket and passes SIGTERM to every
worker, which finishes what it accepted within uvicorn's grace period and exits.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import uvicorn

from cnnkit.errors import CnnkitError

# After the grace period, a worker still running is killed (uvicorn cancels its requests first).
EXIT_MARGIN_S = 5.0
CLEAN_EXITS = (0, -signal.SIGTERM, -signal.SIGINT)
READY = b"r"  # worker -> supervisor: warm, send connections
BACKLOG = 2048  # connections the kernel queues before the supervisor accepts them


def handoff_supported() -> bool:
    return hasattr(socket, "send_fds") and sys.platform.startswith("linux")


def bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound (the port is ours) but not listening: a client that connects
    before the workers are warm is refused at once rather than left waiting in the backlog."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CnnkitError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def _worker(channel: socket.socket, host: str, port: int, options: dict[str, Any]) -> None:
    from cnnkit.serve.server import app_from_env

    app = app_from_env()
    app.state.ready_at_startup = False  # marked by HandoffServer, once connections can come
    config = uvicorn.Config(app, host=host, port=port, **options)
    HandoffServer(config, channel, app.state.shared).run(sockets=[])


class HandoffServer(uvicorn.Server):
    """uvicorn's Server, taking its connections from the supervisor's channel instead of a socket."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket, shared: Any) -> None:
        super().__init__(config)
        self.channel, self.shared = channel, shared

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's startup (models warm); no listening socket
        if self.should_exit:
            return
        self.channel.setblocking(False)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.channel.fileno(), self._take, loop)
        if self.shared is not None:
            self.shared.mark_ready()
        self.channel.send(READY)

    def _protocol(self) -> asyncio.Protocol:
        return self.config.http_protocol_class(config=self.config, server_state=self.server_state,  # type: ignore[call-arg]
                                               app_state=self.lifespan.state)

    def _take(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every connection the supervisor sent, served as if this worker had accepted it."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.channel, 16, 64)
            except BlockingIOError:
                return
            if not data and not fds:  # the supervisor is gone: finish up and exit
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                conn = socket.socket(fileno=fd)
                conn.setblocking(False)
                task = loop.create_task(loop.connect_accepted_socket(self._protocol, conn))
                self.server_state.tasks.add(task)
                task.add_done_callback(self.server_state.tasks.discard)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self.channel.fileno())  # no new connections
        await super().shutdown(sockets=sockets)


@dataclass
class Worker:
    process: Any
    channel: socket.socket  # the supervisor's end
    ready: bool = False


class WorkerPool:
    """``count`` worker processes serving ``host:port``; blocks in :meth:`run` until a signal."""

    def __init__(self, count: int, host: str, port: int, options: dict[str, Any], grace_s: float) -> None:
        self.count, self.host, self.port, self.options, self.grace_s = count, host, port, options, grace_s
        self.context = multiprocessing.get_context("spawn")  # no fork of a parent holding torch threads
        self.workers: list[Worker] = []
        self.stopping = False
        self._turn = 0

    def _start(self) -> Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = self.context.Process(target=_worker, args=(theirs, self.host, self.port, self.options), daemon=False)
        proc.start()
        theirs.close()
        ours.setblocking(False)
        return Worker(proc, ours)

    def _on_signal(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        listener, listening = bind(self.host, self.port), False
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.workers = [self._start() for _ in range(self.count)]
            while not self.stopping:
                watched: list[Any] = [w.process.sentinel for w in self.workers] + [w.channel for w in self.workers]
                if not listening and all(w.ready for w in self.workers):  # ready means every worker warm
                    listener.listen(BACKLOG)
                    listening = True
                if listening:
                    watched.append(listener)
                for obj in wait(watched, timeout=0.5):
                    if obj is listener:
                        self._dispatch(listener)
                    elif isinstance(obj, socket.socket):
                        self._heard(obj)
                self._replace_dead()
            listener.close()  # refuse new connections first, then let the workers finish
            return self._stop()
        finally:
            listener.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _heard(self, channel: socket.socket) -> None:
        worker = next(w for w in self.workers if w.channel is channel)
        try:
            worker.ready = channel.recv(16) == READY  # b"": it exited (its sentinel follows)
        except BlockingIOError:
            pass
        except OSError:
            worker.ready = False

    def _dispatch(self, listener: socket.socket) -> None:
        """Accept every waiting connection; each goes to the next ready worker in turn."""
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. the client reset it before it was accepted
                continue
            with conn:
                if conn.family in (socket.AF_INET, socket.AF_INET6):
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._hand_off(conn)

    def _hand_off(self, conn: socket.socket) -> None:
        ready = [w for w in self.workers if w.ready]
        for _ in range(len(ready)):
            worker = ready[self._turn % len(ready)]
            self._turn += 1
            try:
                socket.send_fds(worker.channel, [b"c"], [conn.fileno()])
                return
            except BlockingIOError:  # its queue of new connections is full: the next one
                continue
            except OSError:  # it died; its sentinel will say so
                worker.ready = False
        # No worker could take it: closing it is the answer (the client sees a reset and may retry).

    def _replace_dead(self) -> None:
        for i, worker in enumerate(self.workers):
            proc = worker.process
            if proc.is_alive() or self.stopping:
                continue
            worker.channel.close()
            if proc.exitcode == 3:  # uvicorn's STARTUP_FAILURE: the app cannot start, every restart would fail
                print(f"cnnkit serve: worker {proc.pid} failed to start; stopping", file=sys.stderr, flush=True)
                self.stopping = True
                return
            print(f"cnnkit serve: worker {proc.pid} died (exit {proc.exitcode}); starting a new one",
                  file=sys.stderr, flush=True)
            self.workers[i] = self._start()

    def _stop(self) -> int:
        for worker in self.workers:
            if worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s + EXIT_MARGIN_S
        for worker in self.workers:
            proc = worker.process
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
            worker.channel.close()
        # uvicorn re-raises the signal it caught once it has shut down, so a worker that stopped
        # cleanly ends "killed by SIGTERM"; one that had to be killed ends by SIGKILL.
        return 0 if all(w.process.exitcode in CLEAN_EXITS for w in self.workers) else 1
