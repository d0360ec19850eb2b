"""Single flight: concurrent awaits of one key in this process share one computation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

R = TypeVar("R")


class SingleFlight:
    """Runs at most one computation per key at a time; later callers await the running one.

    Every caller gets the computation's value or its exception. A caller cancelled while
    waiting leaves the computation running for the others; when the last waiter is
    cancelled, the computation is cancelled too.
    """

    def __init__(self) -> None:
        self._running: dict[str, tuple[asyncio.Task[Any], list[int]]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._running

    async def run(self, key: str, compute: Callable[[], Awaitable[R]]) -> R:
        """``await compute()``, or join the computation of ``key`` already running."""
        running = self._running.get(key)
        if running is None:
            task = asyncio.ensure_future(self._guard(key, compute))
            running = self._running[key] = (task, [0])
        task, waiters = running
        waiters[0] += 1
        try:
            result: R = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done() and waiters[0] == 1:
                task.cancel()
            raise
        finally:
            waiters[0] -= 1
        return result

    async def _guard(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await compute()
        finally:
            self._running.pop(key, None)
