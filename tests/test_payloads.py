"""Large arguments and results travel through shared memory in engine.run, and never leak."""

from __future__ import annotations

import asyncio

import pytest

import hybrid
from hybrid.shared import leftover_segments
from tests import tasks


async def test_a_large_argument_and_result_cross_through_shared_memory(make_engine) -> None:
    engine = await make_engine(workers=1)
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB
    total, echoed = await engine.run(tasks.checksum_and_echo, data)
    assert total == sum(data[::4096])
    assert echoed == data[: len(data) // 2]
    assert leftover_segments() == []


async def test_no_segment_is_left_after_a_crash_a_timeout_or_a_cancellation(make_engine) -> None:
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


async def test_small_arguments_take_the_ordinary_path(make_engine) -> None:
    engine = await make_engine(workers=1, share_threshold_bytes=None)
    data = b"y" * (2 * 1024 * 1024)
    total, _ = await engine.run(tasks.checksum_and_echo, data)  # through the pipe: still right
    assert total == sum(data[::4096])


async def test_the_segment_exists_only_while_the_call_runs(make_engine) -> None:
    engine = await make_engine(workers=1)
    data = b"z" * (4 * 1024 * 1024)
    running = asyncio.ensure_future(engine.run(tasks.sleep_then, 0.5, data))
    await asyncio.sleep(0.2)
    assert leftover_segments() != []  # the argument is in shared memory, not in the pipe
    await running
    assert leftover_segments() == []
