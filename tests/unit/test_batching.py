"""The dynamic batcher alone: batch formation, limits, waiting rules, errors, closing."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cnnkit.serve.batching import Batcher, BatcherClosed, QueueFull


class Recorder:
    """run_batch that records batch sizes and which thread ran it; doubles each item."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.delay = delay

    def __call__(self, items: list[int]) -> list[int]:
        self.sizes.append(len(items))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        return [2 * i for i in items]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_items_share_one_pass_and_keep_their_order():
    rec = Recorder()

    async def main():
        b = Batcher(rec, max_batch=64, max_wait_s=0.05)
        b.start()
        with b.incoming():  # a request on its way: the first pass waits for the others
            tasks = [asyncio.create_task(b.submit(i)) for i in range(10)]
            await asyncio.sleep(0)
        out = await asyncio.gather(*tasks)
        await b.close()
        return out

    assert run(main()) == [2 * i for i in range(10)]
    assert rec.sizes == [10]
    assert all(name.startswith("batcher") for name in rec.threads)  # off the event loop


def test_max_batch_splits_a_burst():
    rec = Recorder()

    async def main():
        b = Batcher(rec, max_batch=4, max_wait_s=0.01)
        b.start()
        out = await b.submit_many(list(range(10)))
        await b.close()
        return out

    assert run(main()) == [2 * i for i in range(10)]
    assert rec.sizes == [4, 4, 2]


def test_lone_request_is_not_held_back_by_max_wait():
    rec = Recorder()

    async def main():
        b = Batcher(rec, max_batch=32, max_wait_s=5.0)
        b.start()
        start = time.perf_counter()
        assert await b.submit(3) == 6
        elapsed = time.perf_counter() - start
        await b.close()
        return elapsed

    assert run(main()) < 1.0  # nothing else was announced, so the 5 s wait does not apply


def test_waits_at_most_max_wait_for_announced_requests():
    rec = Recorder()

    async def main():
        b = Batcher(rec, max_batch=32, max_wait_s=0.2)
        b.start()
        with b.incoming():  # announced but never submits: the batch must still go after 0.2 s
            start = time.perf_counter()
            assert await b.submit(1) == 2
            elapsed = time.perf_counter() - start
        await b.close()
        return elapsed

    elapsed = run(main())
    assert 0.15 <= elapsed < 2.0


def test_items_queued_during_a_pass_form_the_next_batch():
    rec = Recorder(delay=0.2)

    async def main():
        b = Batcher(rec, max_batch=32, max_wait_s=0.0)
        b.start()
        first = asyncio.create_task(b.submit(0))
        await asyncio.sleep(0.05)  # the first pass is running now
        rest = [asyncio.create_task(b.submit(i)) for i in range(1, 6)]
        await asyncio.gather(first, *rest)
        await b.close()

    run(main())
    assert rec.sizes == [1, 5]


def test_errors_reach_every_waiter_and_the_batcher_survives():
    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return items

    async def main():
        b = Batcher(flaky, max_batch=8, max_wait_s=0.01)
        b.start()
        results = await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) and str(r) == "boom" for r in results)
        assert await b.submit(7) == 7
        await b.close()

    run(main())


def test_wrong_number_of_results_is_an_error_not_a_hang():
    async def main():
        b = Batcher(lambda items: items[:-1], max_batch=8, max_wait_s=0.0)
        b.start()
        with pytest.raises(RuntimeError, match="returned 0 results for 1"):
            await asyncio.wait_for(b.submit(1), 5)
        await b.close()

    run(main())


def test_queue_limit_raises_queue_full():
    async def main():
        b = Batcher(Recorder(delay=0.2), max_batch=1, max_wait_s=0.0, max_queue=2)
        b.start()
        first = asyncio.create_task(b.submit(0))
        await asyncio.sleep(0.05)  # running, so the queue is empty again
        queued = [asyncio.create_task(b.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await b.submit(3)
        with pytest.raises(QueueFull):
            await b.submit_many([4, 5, 6])
        await asyncio.gather(first, *queued)
        await b.close()

    run(main())


def test_incoming_refuses_when_the_queue_and_the_requests_on_their_way_reach_the_limit():
    async def main():
        b = Batcher(Recorder(delay=0.2), max_batch=1, max_wait_s=0.0, max_queue=3)
        b.start()
        first = asyncio.create_task(b.submit(0))
        await asyncio.sleep(0.05)  # running: the queue is empty again
        queued = [asyncio.create_task(b.submit(1))]
        await asyncio.sleep(0)
        with b.incoming(), b.incoming():  # 1 waiting + 2 on their way = 3
            with pytest.raises(QueueFull, match="being read"):
                with b.incoming():
                    pass
        with b.incoming():  # one left the queue of requests on their way: room again
            pass
        await asyncio.gather(first, *queued)
        await b.close()

    run(main())


def test_close_drains_then_refuses():
    rec = Recorder(delay=0.05)

    async def main():
        b = Batcher(rec, max_batch=2, max_wait_s=0.0)
        b.start()
        tasks = [asyncio.create_task(b.submit(i)) for i in range(5)]
        await asyncio.sleep(0)
        await b.close(drain=True)
        assert [t.result() for t in tasks] == [0, 2, 4, 6, 8]
        with pytest.raises(BatcherClosed):
            await b.submit(1)

    run(main())


def test_close_without_drain_fails_waiting_items():
    async def main():
        b = Batcher(Recorder(delay=0.2), max_batch=1, max_wait_s=0.0)
        b.start()
        tasks = [asyncio.create_task(b.submit(i)) for i in range(3)]
        await asyncio.sleep(0.05)
        await b.close(drain=False)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert any(isinstance(r, BatcherClosed) for r in results)

    run(main())


def test_cancelled_requests_are_skipped():
    rec = Recorder(delay=0.1)

    async def main():
        b = Batcher(rec, max_batch=8, max_wait_s=0.0)
        b.start()
        first = asyncio.create_task(b.submit(0))
        await asyncio.sleep(0.02)
        doomed = asyncio.create_task(b.submit(1))
        kept = asyncio.create_task(b.submit(2))
        await asyncio.sleep(0)
        doomed.cancel()
        assert await first == 0 and await kept == 4
        await b.close()

    run(main())
    assert rec.sizes == [1, 1]


def test_observers_see_sizes_times_and_depth():
    seen: list[tuple[int, float]] = []
    depths: list[int] = []

    async def main():
        b = Batcher(Recorder(), max_batch=3, max_wait_s=0.01, on_batch=lambda n, s: seen.append((n, s)),
                    on_depth=depths.append)
        b.start()
        await b.submit_many(list(range(5)))
        await b.close()

    run(main())
    assert sorted(n for n, _ in seen) == [2, 3] and all(s >= 0 for _, s in seen)
    assert max(depths) >= 3 and depths[-1] == 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        Batcher(Recorder(), max_batch=0)
    with pytest.raises(ValueError):
        Batcher(Recorder(), max_wait_s=-1)
