"""Exact isolation: a task that kills or overruns its worker fails alone; no other task suffers."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

import hybrid
from tests import tasks
from tests.conftest import MakeEngine
from tests.helpers import calls_recorded, wait_for_full_strength, worker_pids

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py


@pytest.mark.parametrize(
    ("crasher", "args", "exitcode"),
    [
        (tasks.exit_now, (3,), 3),
        (tasks.kill_self, (signal.SIGKILL,), -signal.SIGKILL),
        (tasks.segfault, (), -signal.SIGSEGV),
    ],
    ids=["os._exit", "SIGKILL", "segfault"],
)
async def test_a_crashing_task_fails_alone(
    make_engine: MakeEngine,
    tmp_path: Path,
    crasher: Callable[..., object],
    args: tuple[object, ...],
    exitcode: int,
) -> None:
    engine = await make_engine(workers=2)
    record = tmp_path / "calls"
    neighbours = [
        asyncio.ensure_future(engine.run(tasks.record_call, str(record), value))
        for value in range(20)
    ]
    with pytest.raises(hybrid.WorkerCrashed) as caught:
        await engine.run(crasher, *args)
    assert caught.value.exitcode == exitcode
    assert await asyncio.gather(*neighbours) == list(range(20))
    assert calls_recorded(record) == {value: 1 for value in range(20)}
    await wait_for_full_strength(engine)
    assert await engine.run(tasks.square, 4) == 16
    stats = engine.stats()
    assert stats.crashed == 1
    assert stats.worker_restarts >= 1


async def test_a_crash_inside_a_batch_blames_only_the_crashing_task(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=2)
    record = tmp_path / "calls"
    # Teach the engine that this function is tiny, so its calls share round trips.
    warmup = tmp_path / "warmup"
    for value in range(50):
        await engine.run(tasks.record_then_crash_on, str(warmup), value, -1)
    values = range(2000)
    results = await asyncio.gather(
        *(engine.run(tasks.record_then_crash_on, str(record), value, 1234) for value in values),
        return_exceptions=True,
    )
    failures = {
        value: result
        for value, result in zip(values, results, strict=True)
        if isinstance(result, BaseException)
    }
    assert list(failures) == [1234]
    assert isinstance(failures[1234], hybrid.WorkerCrashed)
    assert calls_recorded(record) == {value: 1 for value in values}
    assert engine.stats().crashed == 1


async def test_a_timeout_kills_and_replaces_only_that_worker(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    before = set(worker_pids(engine))
    neighbour = asyncio.ensure_future(engine.run(tasks.sleep_and_pid, 1.0))
    await asyncio.sleep(0.2)  # the neighbour is running on one worker
    with pytest.raises(hybrid.TaskTimeout) as caught:
        await engine.run(tasks.sleep_then, 30, timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    survivor = await neighbour
    assert survivor in before
    await wait_for_full_strength(engine)
    after = set(worker_pids(engine))
    assert survivor in after
    assert len(after - before) == 1
    assert engine.stats().timed_out == 1


async def test_a_task_that_finishes_in_time_is_not_touched(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    pid = worker_pids(engine)[0]
    assert await engine.run(tasks.sleep_and_pid, 0.05, timeout=5) == pid
    assert worker_pids(engine) == [pid]


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
async def test_every_start_method_runs_and_survives_a_crash(
    make_engine: MakeEngine, start_method: str
) -> None:
    engine = await make_engine(workers=2, start_method=start_method)
    assert await engine.run(tasks.pid_of) != os.getpid()
    with pytest.raises(hybrid.WorkerCrashed):
        await engine.run(tasks.exit_now, 1)
    await wait_for_full_strength(engine)
    results = [result async for result in engine.map(tasks.square, range(100))]
    assert results == [value * value for value in range(100)]


async def test_a_crash_inside_a_map_chunk_settles_exactly(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=2)
    warmup = tmp_path / "warmup"
    [
        _
        async for _ in engine.map(
            functools.partial(tasks.record_then_crash_on, str(warmup), crash_value=-1), range(50)
        )
    ]
    record = tmp_path / "calls"
    crash_on = functools.partial(tasks.record_then_crash_on, str(record), crash_value=1234)
    seen = []
    with pytest.raises(hybrid.WorkerCrashed):
        async for value in engine.map(crash_on, range(3000)):
            seen.append(value)
    assert seen == list(range(1234))
    calls = calls_recorded(record)
    assert all(calls[value] == 1 for value in range(1235))
    assert max(calls.values()) == 1
    assert engine.stats().round_trips < 1000  # the calls did travel in chunks


async def test_map_retries_a_crashed_chunk_call_on_its_own(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=2)
    [_ async for _ in engine.map(tasks.square, range(200))]
    marker = tmp_path / "attempts"
    inputs = [str(marker) if n == 150 else "" for n in range(300)]
    results = [value async for value in engine.map(tasks.crash_twice_when_given, inputs, retries=2)]
    assert results == ["ok" if n == 150 else "" for n in range(300)]
    assert marker.read_text() == "3"


async def test_an_idle_worker_that_dies_is_replaced_at_once(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    victim = worker_pids(engine)[0]
    os.kill(victim, signal.SIGKILL)
    async with asyncio.timeout(10):
        while victim in worker_pids(engine) or engine.stats().workers < 2:
            await asyncio.sleep(0.01)
    assert engine.stats().worker_restarts == 1
    assert engine.stats().crashed == 0  # no call was running: nobody is blamed
    results = await asyncio.gather(*(engine.run(tasks.pid_of) for _ in range(10)))
    assert victim not in results
