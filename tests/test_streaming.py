"""``engine.stream``: a worker's generator yields into the parent's ``async for``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

import hybrid
from hybrid._core import stream as stream_module

from . import stream_tasks
from .conftest import MakeEngine
from .helpers import wait_for_full_strength, wait_until_gone, worker_pids


async def wait_for_path(path: Path, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not path.exists():
            await asyncio.sleep(0.005)


async def test_items_come_from_a_worker_in_order(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    items = [item async for item in engine.stream(stream_tasks.count_to, 50)]
    assert [i for i, _ in items] == list(range(50))
    assert {pid for _, pid in items} == set(worker_pids(engine))
    assert os.getpid() not in {pid for _, pid in items}


async def test_an_item_arrives_before_the_generator_goes_on(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    go_on = tmp_path / "go-on"
    seen = []
    async with asyncio.timeout(20):
        async for item in engine.stream(stream_tasks.wait_for_file_between, 7, str(go_on)):
            seen.append(item)
            go_on.touch()  # the generator waits for this before its second item
    assert seen == [7, 8]


async def test_the_generator_runs_at_most_a_window_ahead(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    progress, closed = tmp_path / "progress", tmp_path / "closed"
    stream = engine.stream(stream_tasks.note_progress, 1000, str(progress), str(closed), window=4)
    async with contextlib.aclosing(stream):
        assert await anext(stream) == 0
        async with asyncio.timeout(10):
            while not progress.exists() or progress.read_text() != "5":
                await asyncio.sleep(0.005)
        # 4 sent and unacknowledged, the 5th made and held. Proving it goes no further
        # needs some time to pass: it would run ahead within milliseconds.
        await asyncio.sleep(0.2)
        assert progress.read_text() == "5"
        assert await anext(stream) == 1
        async with asyncio.timeout(10):
            while progress.read_text() != "6":
                await asyncio.sleep(0.005)


async def test_stopping_the_consumer_closes_the_generator_and_frees_the_worker(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    [pid] = worker_pids(engine)
    progress, closed = tmp_path / "progress", tmp_path / "closed"
    stream = engine.stream(stream_tasks.note_progress, 10**9, str(progress), str(closed))
    async with contextlib.aclosing(stream):
        async for item in stream:
            if item == 3:
                break
    await wait_for_path(closed)
    assert closed.read_text() == str(pid)  # its finally ran in the worker
    # The same worker serves the next call: it was freed, not replaced.
    assert [p for _, p in [item async for item in engine.stream(stream_tasks.count_to, 2)]] == [
        pid,
        pid,
    ]


async def test_a_generator_that_will_not_yield_has_its_worker_replaced(
    make_engine: MakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "STOP_GRACE_S", 0.1)
    engine = await make_engine(workers=1)
    [before] = worker_pids(engine)
    started = tmp_path / "started"
    stream = engine.stream(stream_tasks.stuck_after_one, str(started))
    async with contextlib.aclosing(stream):
        assert await anext(stream) == 1
        await wait_for_path(started)
    await wait_until_gone([before])
    await wait_for_full_strength(engine)
    assert before not in worker_pids(engine)


async def test_the_generators_exception_is_raised_where_it_happened(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(workers=1)
    seen = []
    with pytest.raises(ValueError, match="failed after 3") as caught:
        async for item in engine.stream(stream_tasks.fail_after, 3):
            seen.append(item)
    assert seen == [0, 1, 2]
    assert isinstance(caught.value.__cause__, hybrid.RemoteTraceback)


async def test_an_async_generator_streams_too(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    items = [item async for item in engine.stream(stream_tasks.ticks, 5)]
    assert [i for i, _ in items] == list(range(5))
    assert items[0][1] in worker_pids(engine)


async def test_a_timeout_ends_the_stream_with_task_timeout(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    seen = []
    with pytest.raises(hybrid.TaskTimeout):
        async for item in engine.stream(
            stream_tasks.stuck_after_one, str(tmp_path / "s"), timeout=0.5
        ):
            seen.append(item)
    assert seen == [1]


async def test_a_function_that_is_not_a_generator_fails_the_stream(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(workers=1)
    with pytest.raises(TypeError):
        async for _ in engine.stream(len, [1]):  # type: ignore[arg-type]
            pass
