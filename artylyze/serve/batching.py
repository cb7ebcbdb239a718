"""Micro-batching: images of concurrent requests go through the model in one call.

One consumer per event loop takes the first waiting image, lets others join for up to
``max_wait_s`` (or until ``max_batch`` are there), and runs them together on a single
inference thread. While a batch runs, new requests queue up, so under load the next batch
forms without any wait: throughput approaches the batch engine's, and a lone request pays
at most ``max_wait_s``. ``max_batch=1`` runs every image on its own (the baseline the load
benchmark compares with).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

Outputs = dict[str, np.ndarray]


@dataclass
class BatchStats:
    batches: int = 0
    images: int = 0
    largest: int = 0

    def add(self, n: int) -> None:
        self.batches += 1
        self.images += n
        self.largest = max(self.largest, n)

    def to_dict(self) -> dict[str, float]:
        mean = self.images / self.batches if self.batches else 0.0
        return {"batches": self.batches, "images": self.images, "largest": self.largest,
                "mean": round(mean, 2)}


class MicroBatcher:
    """``await submit(pixels)`` -> that image's outputs (each array keeps a batch axis of 1)."""

    def __init__(self, run: Callable[[np.ndarray], Outputs], max_batch: int = 16,
                 max_wait_s: float = 0.002) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="artylyze-infer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[Outputs]]] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, pixels: np.ndarray) -> Outputs:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._start(loop)
        assert self._queue is not None
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.put_nowait((pixels, future))
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """A queue and a consumer on this loop (test clients may run several loops in turn)."""
        self._loop = loop
        self._queue = asyncio.Queue()
        self._task = loop.create_task(self._consume(self._queue), name="artylyze-batcher")

    async def _consume(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            self._drain(queue, batch)
            if len(batch) < self.max_batch and self.max_wait_s > 0:
                await asyncio.sleep(self.max_wait_s)
                self._drain(queue, batch)
            live = [(pixels, f) for pixels, f in batch if not f.done()]
            if not live:
                continue
            self.stats.add(len(live))
            try:
                outputs = await loop.run_in_executor(
                    self._executor, self._run, np.stack([p for p, _ in live]))
            except Exception as e:  # noqa: BLE001 - every waiting request gets the error
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            for i, (_, f) in enumerate(live):
                if not f.done():
                    f.set_result({name: out[i:i + 1] for name, out in outputs.items()})

    def _drain(self, queue: asyncio.Queue, batch: list) -> None:
        while len(batch) < self.max_batch and not queue.empty():
            batch.append(queue.get_nowait())

    async def aclose(self) -> None:
        """Stop the consumer; requests still queued are cancelled."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait()[1].cancel()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
