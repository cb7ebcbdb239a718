"""Bounded work per process: at most ``capacity`` uploads in flight (more are refused at
once with 503 and Retry-After instead of queueing without end), and a deadline on each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from artylyze.serve.errors import Busy, TimedOut

T = TypeVar("T")


class Admission:
    """A counter of requests in flight on one event loop (so it needs no lock)."""

    def __init__(self, capacity: int, retry_after_s: int) -> None:
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self.inflight = 0
        self.refused = 0

    @property
    def retry_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``capacity`` slots, or raise :class:`Busy` when none is free."""
        if self.inflight >= self.capacity:
            self.refused += 1
            raise Busy(f"the server is busy ({self.inflight} images in progress); retry in "
                       f"{self.retry_after_s} s", headers=self.retry_headers)
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    async def within(self, work: Awaitable[T], seconds: float, what: str) -> T:
        """``await work``, or :class:`TimedOut` after ``seconds`` (the work is cancelled:
        a decode not yet started never starts, a batch drops the request)."""
        try:
            return await asyncio.wait_for(work, seconds)
        except asyncio.TimeoutError:
            raise TimedOut(f"{what} took longer than {seconds:g} s; retry later",
                           headers=self.retry_headers) from None
