"""Results cached in a real Redis, shared by processes: TTL, LRU bound, one computation."""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.redis import RedisCache
from hybrid.shared import Cache, Counter, MemoryCache, cache_version, call_key

from . import workers

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-secret"
WAIT_S = 30.0  # the longest any wait here may take


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted at the end."""
    name = f"test-cache-{uuid.uuid4().hex[:12]}"
    yield name
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{{{name}}}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def make_cache(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., RedisCache]]:
    caches: list[RedisCache] = []

    def make(**options: Any) -> RedisCache:
        options.setdefault("prefix", prefix)
        options.setdefault("secret", SECRET)
        cache = RedisCache(redis_url, **options)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        await cache.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def value_of(v: int) -> int:
    return v


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_engine_run_with_cache_computes_once_and_never_keeps_errors(
    kind: str, make_engine: Callable[..., Any], make_cache: Callable[..., RedisCache]
) -> None:
    engine = await make_engine(workers=2)
    cache: Cache = MemoryCache() if kind == "memory" else make_cache()
    with Counter() as calls:
        first = await asyncio.gather(
            *(engine.run(workers.slow_square, calls, 7, 0.3, cache=cache) for _ in range(5))
        )
        assert first == [49] * 5
        assert await engine.run(workers.slow_square, calls, 7, 0.3, cache=cache) == 49
        assert calls.value == 1
        assert await engine.run(workers.slow_square, calls, 8, 0, cache=cache) == 64
        assert calls.value == 2
        for _ in range(2):
            with pytest.raises(KeyError):
                await engine.run(workers.slow_failure, calls, 0, cache=cache)
        assert calls.value == 4
    with pytest.raises(TypeError, match="importable name"):
        await engine.run(lambda: 1, cache=cache)


async def test_a_hit_is_a_copy_found_by_another_cache_on_the_same_prefix(
    make_cache: Callable[..., RedisCache],
) -> None:
    writer, reader = make_cache(), make_cache()
    assert await writer.get_or_compute("k", lambda: value_of(1)) == 1
    assert await reader.get_or_compute("k", lambda: value_of(2)) == 1
    assert (reader.hits, reader.misses) == (1, 0)
    await reader.invalidate("k")
    assert await reader.get_or_compute("k", lambda: value_of(3)) == 3
    await writer.clear()
    assert await writer.count() == 0


async def test_entries_expire_after_their_ttl(make_cache: Callable[..., RedisCache]) -> None:
    cache = make_cache(ttl_s=0.3)
    assert await cache.get_or_compute("k", lambda: value_of(1)) == 1
    assert await cache.get_or_compute("k", lambda: value_of(2)) == 1
    assert await cache.get_or_compute("short", lambda: value_of(1), ttl_s=0.05) == 1
    await asyncio.sleep(0.5)
    assert await cache.get_or_compute("k", lambda: value_of(3)) == 3
    assert await cache.get_or_compute("short", lambda: value_of(4)) == 4


async def test_the_least_recently_used_entries_go_beyond_the_bound(
    make_cache: Callable[..., RedisCache], raw: aioredis.Redis, prefix: str
) -> None:
    cache = make_cache(max_entries=3)
    for key in ("a", "b", "c"):
        await cache.get_or_compute(key, functools.partial(value_of, 1))
    await cache.get_or_compute("a", functools.partial(value_of, 2))  # a is now the newest
    await cache.get_or_compute("d", functools.partial(value_of, 1))
    await cache.get_or_compute("e", functools.partial(value_of, 1))
    kept = sorted([k.decode() async for k in raw.scan_iter(match=f"{{{prefix}}}:v:*")])
    assert kept == [f"{{{prefix}}}:v:{key}" for key in ("a", "d", "e")]
    assert await cache.count() == 3


async def test_a_forged_entry_is_a_miss(
    make_cache: Callable[..., RedisCache], raw: aioredis.Redis, prefix: str
) -> None:
    cache = make_cache()
    await cache.get_or_compute("k", lambda: value_of(1))
    await raw.set(f"{{{prefix}}}:v:k", b"\0" * 32 + b"not what we stored")
    assert await cache.get_or_compute("k", lambda: value_of(2)) == 2
    other = make_cache(secret="another secret")
    assert await other.get_or_compute("k", lambda: value_of(3)) == 3


async def test_waiters_in_this_process_share_a_failure_that_is_not_kept(
    make_cache: Callable[..., RedisCache],
) -> None:
    cache = make_cache()
    computed = 0

    async def fail() -> None:
        nonlocal computed
        computed += 1
        await asyncio.sleep(0.1)
        raise KeyError("no")

    outcomes = await asyncio.gather(
        *(cache.get_or_compute("k", fail) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, KeyError) for outcome in outcomes)
    assert computed == 1
    assert await cache.count() == 0


def spawn_client(redis_url: str, prefix: str, call: tuple[Any, ...]) -> Any:
    process = multiprocessing.get_context("spawn").Process(
        target=workers.run_cached_when_told, args=(redis_url, prefix, SECRET, call)
    )
    process.start()
    return process


async def wait_for_value(raw: aioredis.Redis, key: str, wanted: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while int(await raw.get(key) or 0) < wanted:
        assert time.monotonic() < deadline, f"{key} never reached {wanted}"
        await asyncio.sleep(0.01)


async def test_identical_calls_from_three_processes_compute_once(
    make_engine: Callable[..., Any],
    make_cache: Callable[..., RedisCache],
    raw: aioredis.Redis,
    prefix: str,
    redis_url: str,
) -> None:
    calls_key = f"{{{prefix}}}:test:calls"
    call = (workers.count_in_redis, redis_url, calls_key, 9, 1.0)
    clients = [spawn_client(redis_url, prefix, call) for _ in range(2)]
    try:
        engine = await make_engine(workers=1)
        cache = make_cache(poll_s=0.1)
        await wait_for_value(raw, f"{{{prefix}}}:test:ready", 2)
        await raw.set(f"{{{prefix}}}:test:go", 1)
        assert await engine.run(*call, cache=cache) == 81
        for client in clients:
            await asyncio.to_thread(client.join, WAIT_S)
            assert client.exitcode == 0
            assert await raw.get(f"{{{prefix}}}:test:result:{client.pid}") == b"81"
        assert await raw.get(calls_key) == b"1"
    finally:
        for client in clients:
            client.kill()


async def test_a_holder_killed_with_sigkill_delays_the_others_only_for_its_lease(
    make_engine: Callable[..., Any],
    make_cache: Callable[..., RedisCache],
    raw: aioredis.Redis,
    prefix: str,
    redis_url: str,
) -> None:
    calls_key = f"{{{prefix}}}:test:calls"
    call = (workers.hang_the_first_time, redis_url, calls_key, 5)
    lock = f"{{{prefix}}}:lock:{call_key(call[0], call[1:])}"
    holder = spawn_client(redis_url, prefix, call)  # its lease: 1 s
    try:
        await raw.set(f"{{{prefix}}}:test:go", 1)
        await wait_for_value(raw, calls_key, 1)  # the holder computes (and hangs)
        assert await raw.exists(lock)
        engine = await make_engine(workers=1)
        waiter = asyncio.ensure_future(engine.run(*call, cache=make_cache(poll_s=0.1)))
        await asyncio.sleep(0.5)
        assert not waiter.done()  # waits for the holder instead of computing again
        os.kill(holder.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert await asyncio.wait_for(waiter, timeout=WAIT_S) == 25
        assert time.monotonic() - killed_at < WAIT_S / 3  # the 1 s lease, not the hour
        assert await raw.get(calls_key) == b"2"
    finally:
        holder.kill()
        await asyncio.to_thread(holder.join, WAIT_S)


def test_cache_version_changes_the_key() -> None:
    def plain(x: int) -> int:
        return x

    assert call_key(workers.slow_square, (1,)) != call_key(workers.slow_square, (1,), version="2")
    marked = cache_version("3")(workers.count_in_redis)
    assert call_key(marked, (1,)) == call_key(workers.count_in_redis, (1,), version="3")
    del workers.count_in_redis.__hybrid_cache_version__  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        call_key(plain)


def test_the_sharing_guides_cache_example_runs(tmp_path: Path, redis_url: str) -> None:
    guide = (ROOT / "docs/guides/sharing.md").read_text()
    match = re.search(r"<!-- cache-example -->\n```python\n(.*?)```", guide, re.DOTALL)
    assert match, "docs/guides/sharing.md has no cache example"
    script = tmp_path / "cache_example.py"
    script.write_text(match.group(1))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["page 7"] * 3
