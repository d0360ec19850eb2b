"""Tasks sent to a worker behind another one: when that happens, and timeouts that wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import hybrid
from tests import tasks
from tests.helpers import worker_pids

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py

SLOW_S = 0.6  # the call ahead, slower than its function's estimate
TIMEOUT_S = 0.3  # the timed call's own limit: far above its run time, below SLOW_S


async def test_a_timed_call_waiting_behind_another_is_not_timed_out_by_the_wait(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    (pid,) = worker_pids(engine)
    for _ in range(5):  # sleep_then is now known as quick: calls may wait behind it
        await engine.run(tasks.sleep_then, 0.001)
    ahead = asyncio.ensure_future(engine.run(tasks.sleep_then, SLOW_S, "ahead"))
    await asyncio.sleep(0.05)
    timed = asyncio.ensure_future(engine.run(tasks.sleep_then, 0.001, "timed", timeout=TIMEOUT_S))
    assert list(await asyncio.wait_for(asyncio.gather(ahead, timed), 10)) == ["ahead", "timed"]
    assert worker_pids(engine) == [pid]  # no timeout killed the worker
    assert engine.stats().round_trips >= 7


async def test_a_timed_call_waiting_behind_another_times_out_once_it_runs(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    for _ in range(5):
        await engine.run(tasks.sleep_then, 0.001)
    ahead = asyncio.ensure_future(engine.run(tasks.sleep_then, TIMEOUT_S / 2, "ahead"))
    await asyncio.sleep(0.05)
    timed = asyncio.ensure_future(engine.run(tasks.sleep_then, 30.0, "timed", timeout=TIMEOUT_S))
    assert await asyncio.wait_for(ahead, 10) == "ahead"
    with pytest.raises(hybrid.TaskTimeout):
        await asyncio.wait_for(timed, 10)
    assert engine.stats().timed_out == 1


async def test_under_saturation_a_worker_holds_its_next_task_like_the_stdlib_executor(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    for _ in range(2):  # sleep_then is now known to take about 50 ms: not a quick task
        await engine.run(tasks.sleep_then, 0.05)
    calls = [asyncio.ensure_future(engine.run(tasks.sleep_then, 0.3, n)) for n in range(3)]
    await asyncio.sleep(0.05)
    # One runs, one waits on the worker to start without a round trip, one waits here.
    assert engine.stats().queued == 1
    assert list(await asyncio.wait_for(asyncio.gather(*calls), 10)) == [0, 1, 2]


async def test_below_saturation_a_slow_task_waits_here_for_the_first_free_worker(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=2)
    for _ in range(2):
        await engine.run(tasks.sleep_then, 0.05)
    calls = [asyncio.ensure_future(engine.run(tasks.sleep_then, 0.3, n)) for n in range(3)]
    await asyncio.sleep(0.05)
    assert engine.stats().queued == 1  # 1 queued < 2 workers: not pushed behind either one
    assert list(await asyncio.wait_for(asyncio.gather(*calls), 10)) == [0, 1, 2]
