"""A micro-batcher: requests that arrive together are answered by one call.

    batcher = Batcher(run_batch, max_batch=32, max_wait_s=0.002, concurrency=1)
    answer = await batcher.submit(item)

`run_batch(items) -> answers` runs in worker threads (so the event loop keeps
reading requests while a batch is computed), at most `concurrency` batches at a
time (more than one when `run_batch` hands its batch to another process and
waits: web/pool.py). A batch starts when a worker is free and either
`max_batch` items are waiting or the oldest has waited `max_wait_s`; whatever
arrives while the batches run goes into the next one, so under load batches
grow by themselves and an idle server adds at most `max_wait_s` to an answer.

Failures stay with the item that caused them: `run_batch` may put an exception
in an item's place (it is raised to that item's caller alone), and if
`run_batch` raises as a whole, each item of that batch is retried on its own.
The batcher knows nothing about HTTP or models.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

X = TypeVar("X")
Y = TypeVar("Y")


class Overloaded(RuntimeError):
    """More than `max_queue` items are waiting: the caller should answer 503 and retry later."""


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def add(self, n: int) -> None:
        self.batches += 1
        self.items += n
        self.largest = max(self.largest, n)
        self.sizes[n] = self.sizes.get(n, 0) + 1

    def to_dict(self) -> dict:
        return {"batches": self.batches, "items": self.items, "largest": self.largest,
                "mean": round(self.items / self.batches, 2) if self.batches else 0.0,
                "sizes": dict(sorted(self.sizes.items()))}


class Batcher(Generic[X, Y]):
    def __init__(self, run_batch: Callable[[list[X]], Sequence[Y | BaseException]], *, max_batch: int = 32,
                 max_wait_s: float = 0.002, max_queue: int = 4096, concurrency: int = 1) -> None:
        if max_batch < 1 or max_wait_s < 0 or max_queue < 1 or concurrency < 1:
            raise ValueError("max_batch, max_queue and concurrency must be >= 1 and max_wait_s >= 0")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._queue: deque[tuple[X, asyncio.Future, float]] = deque()
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="convscope-batch")
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()  # stats are read from other threads (tests, /api/health)

    async def submit(self, item: X) -> Y:
        """The answer for `item`, computed in a batch with whatever else is waiting."""
        if len(self._queue) >= self.max_queue:
            raise Overloaded(f"{len(self._queue)} requests are already waiting; try again in a moment")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._queue.append((item, fut, time.perf_counter()))
        self._schedule(loop)
        return await fut

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- scheduling (event-loop thread only) ------------------------------------------------

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._running >= self.concurrency or not self._queue:
            return
        waited = time.perf_counter() - self._queue[0][2]
        if len(self._queue) >= self.max_batch or waited >= self.max_wait_s:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._start(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s - waited, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._schedule(loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # with several batches at a time, what waits is shared among the free workers (16
        # requests and 2 free workers: two batches of 8), so no worker idles beside a big batch
        take = min(self.max_batch, -(-len(self._queue) // (self.concurrency - self._running)))
        batch = []
        while self._queue and len(batch) < take:
            item, fut, _ = self._queue.popleft()
            if not fut.done():  # a caller that went away (cancelled) needs no answer
                batch.append((item, fut))
        if not batch:
            return self._schedule(loop)
        self._running += 1
        task = loop.run_in_executor(self._pool, self._run, [item for item, _ in batch])
        task.add_done_callback(lambda t: self._finish(loop, batch, t))
        self._schedule(loop)  # a free worker may take what is still waiting

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list, task: asyncio.Future) -> None:
        self._running -= 1
        if task.cancelled():
            outcomes: Sequence = [Overloaded("the server is shutting down; try again in a moment")] * len(batch)
        elif task.exception() is not None:
            outcomes = [task.exception()] * len(batch)
        else:
            outcomes = task.result()
        for (_, fut), out in zip(batch, outcomes):
            if fut.done():
                continue
            if isinstance(out, BaseException):
                fut.set_exception(out)
            else:
                fut.set_result(out)
        self._schedule(loop)

    # ---- the worker thread ------------------------------------------------------------------

    def _run(self, items: list[X]) -> list[Y | BaseException]:
        with self._lock:
            self.stats.add(len(items))
        try:
            out = list(self.run_batch(items))
            if len(out) != len(items):
                raise RuntimeError(f"run_batch gave {len(out)} answers for {len(items)} items")
            return out
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        # one item broke the whole batch: answer each alone, so the failure stays with it
        return [self._run([item])[0] for item in items]
