"""Cancellation, retries, backpressure and map's bounded window."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import hybrid
from tests import tasks
from tests.conftest import MakeEngine
from tests.helpers import calls_recorded, wait_for_full_strength, worker_pids

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py


async def test_cancelling_a_running_task_kills_and_replaces_its_worker(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(workers=1)
    (pid,) = worker_pids(engine)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(engine.run(tasks.sleep_then, 30), timeout=0.3)
    await wait_for_full_strength(engine)
    (replacement,) = worker_pids(engine)
    assert replacement != pid
    assert await engine.run(tasks.pid_of) == replacement


async def test_cancelling_in_a_task_group_frees_the_worker(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)

    async def fail_soon() -> None:
        await asyncio.sleep(0.2)
        raise LookupError("client hung up")

    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as group:
            group.create_task(engine.run(tasks.sleep_then, 30))
            group.create_task(fail_soon())
    await wait_for_full_strength(engine)
    assert await engine.run(tasks.square, 3) == 9


async def test_cancelling_a_queued_task_removes_it_unrun(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    record = tmp_path / "calls"
    blocker = asyncio.ensure_future(engine.run(tasks.sleep_then, 0.5, "done"))
    await asyncio.sleep(0.1)
    queued = asyncio.ensure_future(engine.run(tasks.record_call, str(record), 7))
    await asyncio.sleep(0.05)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert await blocker == "done"
    assert await engine.run(tasks.record_call, str(record), 8) == 8
    assert calls_recorded(record) == {8: 1}
    assert engine.stats().cancelled == 1


async def test_retries_rerun_a_task_whose_worker_died(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=2)
    marker = tmp_path / "attempts"
    assert await engine.run(tasks.crash_until_file_exists, str(marker), retries=2) == "ok"
    assert marker.read_text() == "3"


async def test_retries_give_up_with_worker_crashed(make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = await make_engine(workers=2)
    record = tmp_path / "runs"
    with pytest.raises(hybrid.WorkerCrashed) as caught:
        await engine.run(tasks.always_crash, str(record), retries=2)
    assert caught.value.attempts == 3
    assert record.read_text().count("x") == 3


async def test_a_tasks_own_exception_is_never_retried(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    with pytest.raises(tasks.TaskFailure):
        await engine.run(tasks.raise_value_error, "bad input", retries=5)
    assert engine.stats().failed == 1
    assert engine.stats().submitted == 1


async def test_overloaded_when_the_caller_will_not_wait(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1, max_queued=2)
    running = asyncio.ensure_future(engine.run(tasks.sleep_then, 0.5))
    await asyncio.sleep(0.1)
    queued = [asyncio.ensure_future(engine.run(tasks.square, n)) for n in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(hybrid.Overloaded) as caught:
        await engine.run(tasks.square, 9, block=False)
    assert caught.value.max_queued == 2
    waiting = asyncio.ensure_future(engine.run(tasks.square, 5))  # blocks until there is room
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert engine.stats().queued == 2
    await running
    assert await asyncio.gather(*queued, waiting) == [0, 1, 25]


async def test_map_yields_in_order_from_sync_and_async_iterables(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    assert [y async for y in engine.map(tasks.square, range(500))] == [n * n for n in range(500)]

    async def numbers() -> AsyncIterator[int]:
        for n in range(300):
            if n % 50 == 0:
                await asyncio.sleep(0)
            yield n

    assert [y async for y in engine.map(tasks.square, numbers())] == [n * n for n in range(300)]


async def test_map_unordered_yields_everything_as_it_completes(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    inputs = [0.3, 0.0, 0.0, 0.0]
    results = [y async for y in engine.map(tasks.sleep_and_pid, inputs, ordered=False)]
    assert len(results) == 4
    values = [y async for y in engine.map(tasks.square, range(200), ordered=False)]
    assert sorted(values) == [n * n for n in range(200)]


async def test_map_reads_only_a_bounded_window_of_an_endless_input(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    pulled = itertools.count()

    def endless() -> Iterator[int]:
        while True:
            yield next(pulled)

    results = engine.map(tasks.square, endless(), window=64)
    seen = []
    async for value in results:
        seen.append(value)
        if len(seen) == 1000:
            break
    assert seen == [n * n for n in range(1000)]
    assert next(pulled) <= 1000 + 64 + 1
    await results.aclose()
    async with asyncio.timeout(10):
        while engine.stats().queued or engine.stats().busy:
            await asyncio.sleep(0.01)


async def test_leaving_map_early_cancels_outstanding_work(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    record = tmp_path / "calls"
    async with engine.map(tasks.sleep_then, [0.05] * 1 + [5.0] * 10, window=8) as results:
        async for _ in results:
            break
    async with asyncio.timeout(10):
        while engine.stats().queued or engine.stats().busy:
            await asyncio.sleep(0.01)
    stats = engine.stats()
    assert stats.submitted == 8  # the window, never the whole input
    assert stats.cancelled == 7  # all but the one result read; the running one's worker killed
    assert await engine.run(tasks.record_call, str(record), 1) == 1


async def test_map_raises_a_failing_task_at_its_place(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    seen = []
    with pytest.raises(tasks.TaskFailure):
        async for value in engine.map(tasks.raise_value_error_on, range(100)):
            seen.append(value)
    assert seen == list(range(13))


async def test_tiny_tasks_share_round_trips(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    results = [y async for y in engine.map(tasks.square, range(20_000))]
    assert results == [n * n for n in range(20_000)]
    stats = engine.stats()
    assert stats.completed == 20_000
    assert stats.round_trips < 20_000 / 10


async def test_a_long_task_is_never_batched_behind_tiny_ones(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    [_ async for _ in engine.map(tasks.square, range(2000))]
    trips_before = engine.stats().round_trips
    await asyncio.gather(*(engine.run(tasks.sleep_then, 0.05) for _ in range(4)))
    assert engine.stats().round_trips - trips_before == 4
