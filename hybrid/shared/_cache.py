"""Result caching: a key from a call, the ``Cache`` protocol, and an in-process LRU with TTL.

The engine consults a cache before dispatch::

    key = call_key(fn, args)
    result = await cache.get_or_compute(key, lambda: engine_run(fn, *args))

Concurrent calls with the same key compute once (stampede protection): the others wait
for the first one's result.
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

R = TypeVar("R")

KEY_VERSION = "v1"  # bump when the key recipe changes, so old entries are never misread


def call_key(
    fn: Callable[..., Any], args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
) -> str:
    """A stable key for ``fn(*args, **kwargs)``: the function's identity and the arguments' pickle.

    The same call gives the same key in every process and on every host running the same
    code. Keyword order does not matter.

    Raises:
        TypeError: the function has no importable name (a lambda, a local function) or an
            argument cannot be pickled; such calls cannot be cached.
    """
    inner = getattr(fn, "func", fn)
    module = getattr(inner, "__module__", None)
    qualname = getattr(inner, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise TypeError(f"cannot cache calls of {fn!r}: it has no importable name")
    bound_args = tuple(getattr(fn, "args", ())) + tuple(args)
    bound_kwargs = {**getattr(fn, "keywords", {}), **(kwargs or {})}
    try:
        payload = pickle.dumps((bound_args, sorted(bound_kwargs.items())), protocol=4)
    except Exception as exc:
        raise TypeError(f"cannot cache a call of {qualname}: {exc}") from exc
    digest = hashlib.sha256(payload).hexdigest()
    return f"hybrid:{KEY_VERSION}:{module}:{qualname}:{digest}"


@runtime_checkable
class Cache(Protocol):
    """Where results are kept between calls; implemented in-process here, by Redis in adapters."""

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[R]], ttl_s: float | None = None
    ) -> R:
        """The cached value for ``key``, or ``await compute()`` stored under it.

        Concurrent calls for one key must compute once. A failed computation is not
        stored; its waiters get its exception.
        """
        ...

    async def invalidate(self, key: str) -> None:
        """Forget ``key``."""
        ...

    async def clear(self) -> None:
        """Forget everything."""
        ...


class MemoryCache:
    """An in-process LRU cache of results with a size bound and a time to live.

    Args:
        max_entries: entries kept; the least recently used goes first beyond it.
        ttl_s: seconds an entry stays valid; None keeps it until evicted.

    Cancellation: a caller cancelled while waiting leaves the computation running for the
    other waiters; when the last waiter is cancelled, the computation is cancelled too.
    """

    def __init__(self, max_entries: int = 1024, ttl_s: float | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0 or None, not {ttl_s}")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._computing: dict[str, tuple[asyncio.Task[Any], list[int]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"<MemoryCache {len(self)}/{self.max_entries} entries "
            f"hits={self.hits} misses={self.misses}>"
        )

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[R]], ttl_s: float | None = None
    ) -> R:
        """The cached value for ``key``, or ``await compute()`` stored under it (once per key)."""
        found, value = self.lookup(key)
        if found:
            self.hits += 1
            result: R = value
            return result
        running = self._computing.get(key)
        if running is None:
            self.misses += 1
            task = asyncio.ensure_future(self._compute(key, compute, ttl_s))
            running = self._computing[key] = (task, [0])
        task, waiters = running
        waiters[0] += 1
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done() and waiters[0] == 1:
                task.cancel()
            raise
        finally:
            waiters[0] -= 1
        return result

    def lookup(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` for a live entry (now most recently used), else ``(False, None)``."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires_at, value = entry
        if expires_at < time.monotonic():
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def store(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Keep ``value`` under ``key``, evicting the least recently used beyond the bound."""
        ttl = self.ttl_s if ttl_s is None else ttl_s
        expires_at = float("inf") if ttl is None else time.monotonic() + ttl
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def invalidate(self, key: str) -> None:
        self._entries.pop(key, None)

    async def clear(self) -> None:
        self._entries.clear()

    async def _compute(
        self, key: str, compute: Callable[[], Awaitable[Any]], ttl_s: float | None
    ) -> Any:
        try:
            value = await compute()
            self.store(key, value, ttl_s)
            return value
        finally:
            self._computing.pop(key, None)
