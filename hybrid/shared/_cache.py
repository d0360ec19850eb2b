"""Result caching: a key from a call, the ``Cache`` protocol, and an in-process LRU with TTL.

``engine.run(fn, *args, cache=cache)`` consults a cache before dispatch::

    key = call_key(fn, args)
    result = await cache.get_or_compute(key, lambda: engine.run(fn, *args))

Concurrent calls with the same key compute once (stampede protection): the others wait
for the first one's result. A call that raises is never cached: its waiters get its
exception and the next call computes again.

What can be cached: calls of functions with an importable name (module and qualified
name; not lambdas or local functions) whose arguments pickle. The key is a digest of the
arguments' pickle, so arguments that are equal but pickle differently give different keys
(a miss, never a wrong hit): dicts built in another order, and sets or frozensets of
strings or bytes, whose order changes with each process's hash seed (pass sorted tuples).
An object whose pickle leaves out state that changes its result must not be an argument.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

from ._flight import SingleFlight

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

KEY_VERSION = "v2"  # bump when the key recipe changes, so old entries are never misread
VERSION_ATTRIBUTE = "__hybrid_cache_version__"  # set on a function by cache_version()
_OUT_OF_BAND_BYTES = (
    64 << 10
)  # bytes arguments this large are hashed, not copied into the key's pickle


def cache_version(version: str) -> Callable[[F], F]:
    """Mark a function's results as belonging to ``version``: bump it when its code changes.

    Cached results of another version are never returned (they have other keys)::

        @cache_version("2")
        def render(page: str) -> bytes: ...
    """

    def mark(fn: F) -> F:
        setattr(fn, VERSION_ATTRIBUTE, str(version))
        return fn

    return mark


def call_key(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    version: str | None = None,
) -> str:
    """A stable key for ``fn(*args, **kwargs)``: the function's identity and the arguments' pickle.

    The same call gives the same key in every process and on every host running the same
    code. Keyword order does not matter. The function's identity is its module, its
    qualified name and its version (``version``, else the one :func:`cache_version` gave).

    Raises:
        TypeError: the function has no importable name (a lambda, a local function) or an
            argument cannot be pickled; such calls cannot be cached.
    """
    inner = getattr(fn, "func", fn)
    module = getattr(inner, "__module__", None)
    qualname = getattr(inner, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise TypeError(f"cannot cache calls of {fn!r}: it has no importable name")
    if version is None:
        version = getattr(inner, VERSION_ATTRIBUTE, "")
    bound_args = tuple(getattr(fn, "args", ())) + tuple(args)
    bound_kwargs = {**getattr(fn, "keywords", {}), **(kwargs or {})}
    digest = hashlib.sha256()
    payload = io.BytesIO()
    try:
        _KeyPickler(payload, digest).dump((bound_args, sorted(bound_kwargs.items())))
    except Exception as exc:
        raise TypeError(f"cannot cache a call of {qualname}: {exc}") from exc
    digest.update(payload.getbuffer())
    name = f"{qualname}@{version}" if version else qualname
    return f"hybrid:{KEY_VERSION}:{module}:{name}:{digest.hexdigest()}"


class _KeyPickler(pickle.Pickler):
    """Pickles arguments for a key; large buffers are hashed in place instead of copied."""

    def __init__(self, file: io.BytesIO, digest: Any) -> None:
        super().__init__(file, protocol=5, buffer_callback=functools.partial(_hash_buffer, digest))

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is bytes and len(obj) >= _OUT_OF_BAND_BYTES:
            return bytes, (pickle.PickleBuffer(obj),)
        return NotImplemented


def _hash_buffer(digest: Any, buffer: pickle.PickleBuffer) -> None:
    with buffer.raw() as raw:
        digest.update(raw.nbytes.to_bytes(8, "little"))  # so ab|c and a|bc differ
        digest.update(raw)  # hashlib releases the GIL for large inputs


@runtime_checkable
class Cache(Protocol):
    """Where results are kept between calls: :class:`MemoryCache` here, ``RedisCache`` in
    ``adapters.redis`` (shared by every process and host using the same Redis)."""

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[R]], ttl_s: float | None = None
    ) -> R:
        """The cached value for ``key``, or ``await compute()`` stored under it.

        Concurrent calls for one key must compute once (across processes and hosts, for
        a shared cache). A failed computation is not stored.

        Args:
            key: from :func:`call_key`.
            compute: makes the value; called only on a miss.
            ttl_s: seconds the value stays valid; None means the cache's own default.
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
        self._flights = SingleFlight()

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
        return await self._flights.run(key, functools.partial(self._compute, key, compute, ttl_s))

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
        self.misses += 1
        value = await compute()
        self.store(key, value, ttl_s)
        return value
