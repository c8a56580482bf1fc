"""Dynamic batching: concurrent requests for one model become one forward pass.

A forward pass of a small CNN costs nearly the same for 1 image as for 32, so under load the
server answers many requests per pass. ``Batcher.submit(item)`` queues one item and awaits its
result; one task per model takes the first waiting item, then gathers more until ``max_batch``
items or ``max_wait_s`` has passed since that first item, and runs ``run_batch(items)`` on a
single worker thread (so the event loop keeps reading requests meanwhile). The wait is counted
from the arrival of the oldest waiting item (Triton's "max queue delay"): items that queued up
while the previous pass ran go out at once, so under load batches fill without any added wait.
And it only waits while more items are known to be on their way: callers wrap the work before
``submit`` (decoding the image) in ``incoming()``, so a lone request on an idle server is not
held back at all.

Generic over items and results, with no model code: tested on its own (tests/unit/test_batching.py).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """More items are waiting than ``max_queue``: the caller should answer 503 and Retry-After."""


class BatcherClosed(Exception):
    """The batcher was closed (its model was unloaded) before the item could run."""


class Batcher(Generic[T, R]):
    """Gather items submitted concurrently into calls of ``run_batch(list[T]) -> Sequence[R]``.

    ``on_batch(size, seconds)`` and ``on_depth(queued)`` are optional observers (metrics).
    Create and use it inside one running event loop; ``start`` must be called before ``submit``.
    """

    def __init__(self, run_batch: Callable[[list[T]], Sequence[R]], max_batch: int = 32, max_wait_s: float = 0.002,
                 max_queue: int = 1024, on_batch: Callable[[int, float], None] | None = None,
                 on_depth: Callable[[int], None] | None = None, name: str = "batcher") -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_s >= 0")
        self.run_batch = run_batch
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._on_batch, self._on_depth = on_batch, on_depth
        self._pending: deque[tuple[T, asyncio.Future[R], float]] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One thread: passes of one model never overlap (they would only fight for the cores).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._closed = False
        self._busy = 0  # items taken from the queue whose pass has not finished
        self._incoming = 0  # requests being decoded that will submit soon

    @property
    def depth(self) -> int:
        """Items waiting for a pass (not counting the pass running now)."""
        return len(self._pending)

    @property
    def idle(self) -> bool:
        return not self._pending and not self._busy

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request on its way to ``submit`` (while its images are decoded).

        Raises QueueFull at once when the items waiting and the requests already on their way
        reach ``max_queue``: under overload a request that would be refused anyway is refused
        before its body is read and decoded, work that only delayed the accepted ones."""
        if len(self._pending) + self._incoming >= self.max_queue:
            raise QueueFull(f"{len(self._pending)} images are waiting and {self._incoming} requests are being read")
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            if not self._incoming:
                self._arrived.set()  # nothing more is coming: a waiting batch can go

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result (an exception of ``run_batch`` is raised here)."""
        if self._closed:
            raise BatcherClosed("this model is no longer served")
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"{len(self._pending)} images are already waiting for this model")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future, time.monotonic()))
        self._depth_changed()
        self._arrived.set()
        return await future

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """All of ``items`` (they may land in different passes); results in the same order."""
        if len(self._pending) + len(items) > self.max_queue:
            raise QueueFull(f"{len(self._pending)} images are already waiting for this model")
        if len(items) == 1:  # the usual request: no task per item
            return [await self.submit(items[0])]
        return list(await asyncio.gather(*(self.submit(i) for i in items)))

    async def close(self, drain: bool = True) -> None:
        """Stop taking items; with ``drain``, finish what is queued first (used for hot swaps)."""
        self._closed = True
        if drain:
            while not self.idle:
                await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._pending:
            _, future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(BatcherClosed("this model is no longer served"))
        self._executor.shutdown(wait=True)

    def _depth_changed(self) -> None:
        if self._on_depth is not None:
            self._on_depth(len(self._pending))

    async def _gather(self) -> None:
        """Wait until the queue holds ``max_batch`` items or the oldest has waited ``max_wait_s``."""
        deadline = self._pending[0][2] + self.max_wait_s
        while len(self._pending) < self.max_batch and self._incoming:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while self._pending and len(batch) < self.max_batch:
            item, future, _ = self._pending.popleft()
            if not future.done():  # its request timed out or went away while it waited
                batch.append((item, future))
        self._depth_changed()
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            if self.max_wait_s > 0 and self._pending:
                await self._gather()
            batch = self._take()
            if not batch:
                continue
            self._busy = len(batch)
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except asyncio.CancelledError:  # closed without draining, mid-pass
                for _, future in batch:
                    if not future.done():
                        future.set_exception(BatcherClosed("this model is no longer served"))
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request, not lost
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
            finally:
                self._busy = 0
            if self._on_batch is not None:
                self._on_batch(len(batch), time.perf_counter() - start)

