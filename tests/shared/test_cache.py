"""The in-process result cache in front of real worker processes."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import pytest

import hybrid
from hybrid.shared import Cache, Counter, MemoryCache, call_key, leftover_segments

from . import workers


async def cached_run(
    engine: hybrid.Engine, cache: Cache, fn: Callable[..., Any], *args: Any
) -> Any:
    """What engine.run(fn, *args, cache=cache) will do."""
    return await cache.get_or_compute(call_key(fn, args), lambda: engine.run(fn, *args))


async def test_concurrent_identical_calls_compute_once(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine(workers=2)
    cache = MemoryCache()
    with Counter() as calls:
        results = await asyncio.gather(
            *(cached_run(engine, cache, workers.slow_square, calls, 7, 0.3) for _ in range(10))
        )
        assert results == [49] * 10
        assert calls.value == 1
        assert await cached_run(engine, cache, workers.slow_square, calls, 7, 0.3) == 49
        assert calls.value == 1
        assert (cache.hits, cache.misses) == (1, 1)
        assert await cached_run(engine, cache, workers.slow_square, calls, 8, 0) == 64
        assert calls.value == 2


async def test_entries_expire_after_their_ttl(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine(workers=1)
    cache = MemoryCache(ttl_s=0.2)
    with Counter() as calls:
        await cached_run(engine, cache, workers.slow_square, calls, 3, 0)
        await cached_run(engine, cache, workers.slow_square, calls, 3, 0)
        assert calls.value == 1
        await asyncio.sleep(0.3)
        await cached_run(engine, cache, workers.slow_square, calls, 3, 0)
        assert calls.value == 2


async def test_failures_are_shared_by_waiters_and_never_cached(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    cache = MemoryCache()
    with Counter() as calls:
        outcomes = await asyncio.gather(
            *(cached_run(engine, cache, workers.slow_failure, calls, 0.2) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, KeyError) for outcome in outcomes)
        assert calls.value == 1
        with pytest.raises(KeyError):
            await cached_run(engine, cache, workers.slow_failure, calls, 0)
        assert calls.value == 2
    assert len(cache) == 0


async def test_one_cancelled_waiter_does_not_cancel_the_others_but_the_last_one_does() -> None:
    cache = MemoryCache()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def compute() -> str:
        started.set()
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    first = asyncio.ensure_future(cache.get_or_compute("k", compute))
    second = asyncio.ensure_future(cache.get_or_compute("k", compute))
    await started.wait()
    first.cancel()
    assert await second == "done"
    assert first.cancelled()
    started.clear()
    only = asyncio.ensure_future(cache.get_or_compute("other", compute))
    await started.wait()
    only.cancel()
    await asyncio.wait_for(cancelled.wait(), timeout=5)
    assert len(cache) == 1


async def test_the_least_recently_used_entry_goes_first() -> None:
    cache = MemoryCache(max_entries=2)

    async def value(v: int) -> int:
        return v

    for key in ("a", "b"):
        await cache.get_or_compute(key, functools.partial(value, 1))
    await cache.get_or_compute("a", functools.partial(value, 2))  # a is now the newest
    await cache.get_or_compute("c", functools.partial(value, 3))
    assert cache.lookup("a") == (True, 1)
    assert cache.lookup("b") == (False, None)
    assert cache.lookup("c") == (True, 3)
    await cache.invalidate("a")
    assert cache.lookup("a") == (False, None)
    await cache.clear()
    assert len(cache) == 0


def test_call_keys_depend_on_function_and_arguments_only() -> None:
    assert call_key(workers.slow_square, (1, 2)) == call_key(workers.slow_square, (1, 2))
    assert call_key(workers.slow_square, (1, 2)) != call_key(workers.slow_square, (2, 1))
    assert call_key(workers.slow_square, (1,)) != call_key(workers.slow_failure, (1,))
    assert call_key(max, (), {"a": 1, "b": 2}) == call_key(max, (), {"b": 2, "a": 1})
    assert call_key(functools.partial(divmod, 7), (2,)) == call_key(divmod, (7, 2))
    assert call_key(workers.slow_square, ()).startswith("hybrid:v2:tests.shared.workers:")
    # Buffers are hashed apart from the pickle: their boundaries still count.
    split = (bytearray(b"ab"), bytearray(b"c"))
    assert call_key(workers.slow_square, split) != call_key(
        workers.slow_square, (bytearray(b"a"), bytearray(b"bc"))
    )
    assert call_key(workers.slow_square, split) == call_key(
        workers.slow_square, (bytearray(b"ab"), bytearray(b"c"))
    )
    with pytest.raises(TypeError, match="importable"):
        call_key(lambda: None)
    assert isinstance(MemoryCache(), Cache)


async def test_a_call_with_a_large_argument_is_cached_and_its_segments_released(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    cache = MemoryCache()
    data = bytes(range(256)) * 8192  # 2 MiB: hashed in place, sent by shared memory
    for _ in range(2):
        assert await engine.run(workers.reverse_bytes, data, cache=cache) == data[::-1]
    assert (cache.hits, cache.misses) == (1, 1)
    other = bytearray(data)
    other[-1] ^= 1
    assert call_key(workers.reverse_bytes, (data,)) != call_key(
        workers.reverse_bytes, (bytes(other),)
    )
    assert leftover_segments() == []
