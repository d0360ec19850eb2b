"""Large arguments and results travel through shared memory in engine.run, and never leak."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest

import hybrid
from hybrid.shared import _landing, _payload, leftover_segments, publish, trim_spares
from tests import tasks
from tests.shared import workers

MiB = 1 << 20


async def test_a_large_argument_and_result_cross_through_shared_memory(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB
    total, echoed = await engine.run(tasks.checksum_and_echo, data)
    assert total == sum(data[::4096])
    assert echoed == data[: len(data) // 2]
    assert leftover_segments() == []


async def test_no_segment_is_left_after_a_crash_a_timeout_or_a_cancellation(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    data = b"x" * (4 * 1024 * 1024)
    with pytest.raises(hybrid.WorkerCrashed) as crashed:
        await engine.run(tasks.crash_with, data)
    assert "crash_with" in str(crashed.value)  # named after the user's function
    with pytest.raises(hybrid.TaskTimeout, match="sleep_then"):
        await engine.run(tasks.sleep_then, 10, data, timeout=0.2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(engine.run(tasks.sleep_then, 10, data), timeout=0.2)
    assert leftover_segments() == []


async def test_small_arguments_take_the_ordinary_path(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine(workers=1, share_threshold_bytes=None)
    data = b"y" * (2 * 1024 * 1024)
    total, _ = await engine.run(tasks.checksum_and_echo, data)  # through the pipe: still right
    assert total == sum(data[::4096])


async def test_the_segment_exists_only_while_the_call_runs(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine(workers=1)
    data = b"z" * (4 * 1024 * 1024)
    running = asyncio.ensure_future(engine.run(tasks.sleep_then, 0.5, data))
    await asyncio.sleep(0.2)
    assert leftover_segments() != []  # the argument is in shared memory, not in the pipe
    await running
    assert leftover_segments() == []


async def test_map_sends_large_items_through_shared_memory_and_releases_them(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=2)
    big = [os.urandom(2 * MiB), os.urandom(3 * MiB)]
    items = [big[0], b"small", 7, big[1], bytearray(big[0])]
    trim_spares()
    results = [result async for result in engine.map(workers.flip, items)]
    assert results == [workers.flip(item) for item in items]
    assert type(results[4]) is bytearray
    assert leftover_segments() == []
    assert leftover_segments(spares=True) != []  # the large items went by shared memory
    unordered = [result async for result in engine.map(workers.flip, items, ordered=False)]
    assert sorted(repr(r) for r in unordered) == sorted(repr(r) for r in results)
    assert leftover_segments() == []


async def test_map_releases_large_items_after_a_failure_and_an_early_exit(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=2)
    with pytest.raises(ValueError, match="refused"):
        async for _ in engine.map(workers.fail_with, [bytes(2 * MiB)] * 4):
            pass
    assert leftover_segments() == []
    results = engine.map(tasks.sleep_then, [0.0, 30.0, 30.0, 30.0])
    async for _ in results:
        break
    await results.aclose()
    assert leftover_segments() == []
    slow = engine.map(workers.sleep_with_bytes, [bytes(2 * MiB)] * 6)
    async for echoed in slow:
        assert len(echoed) == 2 * MiB
        break
    await slow.aclose()
    assert leftover_segments() == []


async def test_a_large_item_among_chunked_tiny_calls_goes_alone(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    async for _ in engine.map(workers.flip, range(2000)):  # the function is known to be tiny
        pass
    items = [*range(300), os.urandom(2 * MiB), *range(300)]
    trim_spares()
    results = [result async for result in engine.map(workers.flip, items)]
    assert results == [*items[:300], items[300][::-1], *items[301:]]
    assert leftover_segments() == []
    assert leftover_segments(spares=True) != []


async def test_spares_are_bounded_reused_and_trimmed(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine(workers=1)
    trim_spares()
    for size in (4 * MiB, 2 * MiB, 3 * MiB, 4 * MiB):
        data = os.urandom(size)
        assert await engine.run(workers.reverse_bytes, data) == data[::-1]
    spares = leftover_segments(spares=True)
    assert 1 <= len(spares) <= 2  # the argument's and the result's, reused call after call
    assert leftover_segments() == []
    assert trim_spares() == len(spares)
    assert leftover_segments(spares=True) == []


async def test_a_view_a_worker_kept_is_never_overwritten_by_a_later_call(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    first = os.urandom(2 * MiB)
    await engine.run(workers.keep_view, memoryview(first))
    for _ in range(3):
        await engine.run(workers.reverse_bytes, os.urandom(2 * MiB))
    assert await engine.run(workers.kept_view_digest) == hashlib.sha256(first).hexdigest()


async def test_a_function_that_returned_a_large_result_returns_the_next_through_shared_memory(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    _payload._large_returners.pop(workers.make_bytes, None)  # noted by an earlier test run
    trim_spares()
    assert await engine.run(workers.make_bytes, 2 * MiB, 1) == b"\1" * (2 * MiB)
    assert leftover_segments(spares=True) == []  # the first result came through the pipe
    assert await engine.run(workers.make_bytes, 2 * MiB, 2) == b"\2" * (2 * MiB)
    assert leftover_segments(spares=True) != []  # the second through a segment, now spare
    assert leftover_segments() == []


async def test_a_large_bytes_result_lands_in_memory_prepared_while_the_call_ran(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    size = _landing.MIN_LANDING_BYTES + MiB
    # Prepared for the last size: the same, smaller, larger (then read the plain way).
    for size_bytes, fill in ((size, 1), (size, 2), (size - MiB, 3), (size + MiB, 4), (size, 5)):
        result = await engine.run(workers.make_bytes, size_bytes, fill)
        assert type(result) is bytes
        assert len(result) == size_bytes
        assert result[:1] == result[-1:] == bytes([fill])
        assert result.count(fill) == size_bytes
    assert leftover_segments() == []


def test_a_landing_buffer_hands_over_its_bytes_and_refuses_what_does_not_fit() -> None:
    published = publish(b"abc" * MiB)
    with published:
        buffer = _landing.prepare(3 * MiB + 10)
        assert _landing.land(buffer, published.handle.name, 3 * MiB) == b"abc" * MiB
        small = _landing.prepare(MiB)
        assert _landing.land(small, published.handle.name, 3 * MiB) is None


async def test_memory_is_reused_only_once_no_one_holds_the_value_it_held(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    size = _landing.MIN_LANDING_BYTES + MiB
    held = [await engine.run(workers.make_bytes, size, fill) for fill in (1, 2)]
    for fill in (3, 4):  # dropped at once: their memory is reused
        assert (await engine.run(workers.make_bytes, size, fill)).count(fill) == size
    assert held[0].count(1) == size
    assert held[1].count(2) == size
    arguments = [os.urandom(size), os.urandom(size)]
    digests = [await engine.run(workers.keep_and_digest, data) for data in arguments]
    assert digests == [hashlib.sha256(data).hexdigest() for data in arguments]
    assert await engine.run(workers.kept_digests) == digests  # the worker's kept ones intact
    assert leftover_segments() == []
