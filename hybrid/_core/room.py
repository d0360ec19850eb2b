"""Callers waiting for room in a pool's queue, woken in the order they came."""

from __future__ import annotations

import asyncio
from collections import deque


class RoomWaiters:
    """A queue of callers, each waiting for room for one task."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait(self) -> None:
        """Wait until woken; a cancelled caller leaves the queue."""
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def wake(self, room: int) -> None:
        """Wake the first ``room`` callers still waiting."""
        while room > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def wake_all(self) -> None:
        self.wake(len(self._waiters))
