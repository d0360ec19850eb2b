"""Async functions run in a worker on the worker's own event loop, like sync ones."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import hybrid

from . import async_tasks
from .conftest import MakeEngine
from .helpers import wait_for_full_strength, wait_until_gone, worker_pids


async def test_an_async_function_runs_in_a_worker(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    value, pid = await engine.run(async_tasks.io_then_square, 7, 0.01)
    assert value == 49
    assert pid != os.getpid()
    assert pid in worker_pids(engine)


async def test_the_worker_keeps_its_own_loop_uvloop_when_installed(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(workers=1)
    first = await engine.run(async_tasks.loop_seen)
    second = await engine.run(async_tasks.loop_seen)
    assert first == second  # the same loop, in the same worker
    assert first[0].startswith("uvloop")  # uvloop is installed in the test environment
    assert first[2] != os.getpid()


async def test_an_async_lambda_and_closure_go_by_value(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    offset = 5

    async def add(x: int) -> int:
        await asyncio.sleep(0)
        return x + offset

    assert await engine.run(add, 1) == 6


async def test_its_exception_reaches_the_caller(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    with pytest.raises(ValueError, match="after an await") as caught:
        await engine.run(async_tasks.fail_after_await, "after an await")
    assert isinstance(caught.value.__cause__, hybrid.RemoteTraceback)


async def test_a_timeout_kills_the_worker_and_it_is_replaced(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    [before] = worker_pids(engine)
    with pytest.raises(hybrid.TaskTimeout):
        await engine.run(async_tasks.sleep_forever, timeout=0.2)
    await wait_until_gone([before])
    await wait_for_full_strength(engine)
    _, after = await engine.run(async_tasks.io_then_square, 2)
    assert after != before


async def test_cancelling_the_caller_kills_the_worker(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    [before] = worker_pids(engine)
    started = tmp_path / "started"
    handle = await engine.submit(async_tasks.sleep_forever, str(started))
    async with asyncio.timeout(10):
        while not started.exists():  # running in the worker, not just sent to it
            await asyncio.sleep(0.01)
    handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handle
    await wait_until_gone([before])
    await wait_for_full_strength(engine)
    assert before not in worker_pids(engine)


async def test_a_crash_is_retried_in_a_fresh_worker(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    marker = str(tmp_path / "crashed-once")
    assert await engine.run(async_tasks.crash_after_await, marker, retries=1) == "survived"
    with pytest.raises(hybrid.WorkerCrashed):
        await engine.run(async_tasks.crash_after_await, str(tmp_path / "again"))
