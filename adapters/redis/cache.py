"""A result cache in Redis, shared by every process and host: TTL, LRU bound, one computation.

Keys, all under one hash tag so the scripts may touch them together::

    {prefix}:v:<call key>     the signed, pickled value (PX = its time to live)
    {prefix}:lock:<call key>  the computing holder's token (PX = its lease, renewed)
    {prefix}:done:<call key>  a one-item list that wakes the waiters when the holder ends
    {prefix}:lru              sorted set: call key -> last use (from {prefix}:clock)

A lookup is one script: the value if there is one (marking it used), else the lock if it
is free (this caller computes), else "busy": the caller blocks on the done list (BLMOVE
onto itself, so one push wakes every waiter) for at most ``poll_s`` and looks again. A
holder that dies stops renewing its lease; the lock expires and a waiter takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import pickle
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis

from hybrid.shared import SingleFlight

from .conn import TRANSIENT_ERRORS, connect

R = TypeVar("R")

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_TTL_S = 3600.0
DEFAULT_LEASE_S = 10.0  # a dead holder delays the others this long at most
DEFAULT_POLL_S = 0.5  # longest single wait before a waiter looks again
DEFAULT_MAX_VALUE_BYTES = 16 << 20  # larger results are returned but not kept
_WAKE_TTL_MS = 10_000  # the done list outlives its push this long
_MAC_BYTES = 32  # HMAC-SHA256 in front of every stored pickle

_HIT, _LOCKED, _BUSY = 1, 2, 0

# KEYS: value, lock, done, lru, clock. ARGV: token, lease ms, call key.
_LOOKUP = """
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), ARGV[3])
  return {1, v}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[3])
  return {2}
end
return {0}
"""

# KEYS: value, lock, done, lru, clock. ARGV: token, value, ttl ms (0: none), call key,
# max entries, value key prefix.
_STORE = """
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), ARGV[4])
local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[5])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[4], excess)
  for i = 1, #oldest, 2 do
    redis.call('DEL', ARGV[6] .. oldest[i])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
redis.call('LPUSH', KEYS[3], 1)
redis.call('PEXPIRE', KEYS[3], WAKE_TTL_MS)
return 1
""".replace("WAKE_TTL_MS", str(_WAKE_TTL_MS))

# KEYS: lock, done. ARGV: token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('LPUSH', KEYS[2], 1)
  redis.call('PEXPIRE', KEYS[2], WAKE_TTL_MS)
  return 1
end
return 0
""".replace("WAKE_TTL_MS", str(_WAKE_TTL_MS))

# KEYS: lock. ARGV: token, lease ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisCache:
    """Results kept in Redis for ``engine.run(fn, *args, cache=...)``, shared across hosts.

    Identical calls running at once anywhere compute once: the first takes a lock with a
    lease it renews while it computes, the others wait for its value. If the holder dies,
    its lease runs out and one waiter computes instead; if it raises, it stores nothing
    and one waiter computes again (exceptions are never cached). Values are pickled and
    signed with HMAC-SHA256: an entry with a wrong signature counts as a miss, so only
    holders of ``secret`` can make this process unpickle something.

    Args:
        url: the Redis URL (``redis://``, ``rediss://``, with ACL user and password).
        prefix: the key prefix; caches with the same prefix and secret share entries.
        secret: the HMAC key; defaults to the ``HYBRID_SECRET`` environment variable.
        max_entries: values kept; beyond it, the least recently used go first.
        ttl_s: seconds a value stays valid (None: until evicted).
        lease_s: how long a computing holder's lock lasts unless renewed (every third of
            it); how long others wait at most when the holder has died.
        poll_s: how long a waiter blocks before it looks again.
        max_value_bytes: larger pickled results are returned but not kept.
        client: use this client instead of connecting to ``url`` (it is not closed).

    Cancellation: a caller cancelled while computing releases the lock and wakes the
    waiters, one of which computes instead.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "hybrid-cache",
        secret: bytes | str | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_s: float | None = DEFAULT_TTL_S,
        lease_s: float = DEFAULT_LEASE_S,
        poll_s: float = DEFAULT_POLL_S,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        client: aioredis.Redis | None = None,
    ) -> None:
        secret = secret if secret is not None else os.environ.get("HYBRID_SECRET")
        if not secret:
            raise ValueError("RedisCache needs a secret to sign its pickles (or HYBRID_SECRET)")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0 or None, not {ttl_s}")
        if lease_s <= 0 or poll_s <= 0:
            raise ValueError("lease_s and poll_s must be > 0")
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._prefix = f"{{{prefix}}}:"
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.max_value_bytes = max_value_bytes
        self.hits = 0
        self.misses = 0
        self._owns_client = client is None
        self._client = client if client is not None else connect(url)
        self._lookup = self._client.register_script(_LOOKUP)
        self._store = self._client.register_script(_STORE)
        self._release = self._client.register_script(_RELEASE)
        self._renew = self._client.register_script(_RENEW)
        self._flights = SingleFlight()

    def __repr__(self) -> str:
        return f"<RedisCache {self._prefix}* hits={self.hits} misses={self.misses}>"

    async def __aenter__(self) -> RedisCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (unless it was passed in)."""
        if self._owns_client:
            await self._client.aclose()

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[R]], ttl_s: float | None = None
    ) -> R:
        """The value kept for ``key``, or ``await compute()`` kept under it (once everywhere).

        Args:
            key: from :func:`hybrid.shared.call_key`.
            compute: makes the value; called only when no one has it or is making it.
            ttl_s: seconds the value stays valid; None means the cache's ``ttl_s``.
        """
        result: R = await self._flights.run(key, lambda: self._get_or_compute(key, compute, ttl_s))
        return result

    async def invalidate(self, key: str) -> None:
        """Forget ``key``."""
        await self._client.delete(self._key("v", key))
        await self._client.zrem(self._prefix + "lru", key)

    async def clear(self) -> None:
        """Forget every entry under this prefix (and any lock or wake-up list)."""
        async for name in self._client.scan_iter(match=self._prefix + "*", count=1000):
            await self._client.delete(name)

    async def count(self) -> int:
        """How many values are kept (expired ones not yet swept included)."""
        return int(await self._client.zcard(self._prefix + "lru"))

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}{kind}:{key}"

    def _keys(self, key: str) -> list[str]:
        prefix = self._prefix
        return [
            self._key("v", key),
            self._key("lock", key),
            self._key("done", key),
            prefix + "lru",
            prefix + "clock",
        ]

    async def _get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[Any]], ttl_s: float | None
    ) -> Any:
        token = secrets.token_hex(16)
        keys = self._keys(key)
        lease_ms = int(self.lease_s * 1000)
        while True:
            try:
                reply = await self._lookup(keys=keys, args=[token, lease_ms, key])
            except TRANSIENT_ERRORS:
                self.misses += 1
                return await compute()  # Redis is unreachable: compute without the cache
            if reply[0] == _HIT:
                found, value = self._unseal(key, reply[1])
                if found:
                    self.hits += 1
                    return value
                await self._client.delete(keys[0])  # forged or corrupt: a miss
            elif reply[0] == _LOCKED:
                self.misses += 1
                return await self._compute_as_holder(key, keys, token, compute, ttl_s)
            else:
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    # BLMOVE onto itself leaves the item, so one push wakes every waiter.
                    await self._client.blmove(
                        keys[2],
                        keys[2],
                        self.poll_s,  # type: ignore[arg-type]  # the stubs want int; seconds may be fractional
                    )

    async def _compute_as_holder(
        self,
        key: str,
        keys: list[str],
        token: str,
        compute: Callable[[], Awaitable[Any]],
        ttl_s: float | None,
    ) -> Any:
        renewing = asyncio.ensure_future(self._keep_lease(keys[1], token))
        try:
            value = await compute()
            sealed = self._seal(key, value)
        except BaseException:
            renewing.cancel()
            await self._let_go(keys, token)
            raise
        renewing.cancel()
        if sealed is None:
            await self._let_go(keys, token)
            return value
        ttl = self.ttl_s if ttl_s is None else ttl_s
        ttl_ms = 0 if ttl is None else max(1, int(ttl * 1000))
        args: list[bytes | str | int] = [
            token,
            sealed,
            ttl_ms,
            key,
            self.max_entries,
            self._prefix + "v:",
        ]
        with contextlib.suppress(*TRANSIENT_ERRORS):  # the value is not kept; no harm
            await self._store(keys=keys, args=args)
        return value

    async def _let_go(self, keys: list[str], token: str) -> None:
        """Free the lock and wake the waiters, one of which computes instead."""
        with contextlib.suppress(*TRANSIENT_ERRORS):  # else the lease runs out
            await self._release(keys=keys[1:3], args=[token])

    async def _keep_lease(self, lock: str, token: str) -> None:
        lease_ms = int(self.lease_s * 1000)
        while True:
            await asyncio.sleep(self.lease_s / 3)
            with contextlib.suppress(*TRANSIENT_ERRORS):
                if not await self._renew(keys=[lock], args=[token, lease_ms]):
                    return  # lost (Redis restarted): someone else may compute too

    def _seal(self, key: str, value: Any) -> bytes | None:
        """The signed pickle of ``value``; None if it does not pickle or is too large."""
        try:
            data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception:
            return None
        if len(data) + _MAC_BYTES > self.max_value_bytes:
            return None
        return self._mac(key, data) + data

    def _unseal(self, key: str, sealed: bytes) -> tuple[bool, Any]:
        mac, data = sealed[:_MAC_BYTES], sealed[_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(key, data)):
            return False, None
        return True, pickle.loads(data)

    def _mac(self, key: str, data: bytes) -> bytes:
        # The key is signed too, so a valid entry cannot be copied under another call.
        signer = hmac.new(self._secret, key.encode(), hashlib.sha256)
        signer.update(data)
        return signer.digest()
