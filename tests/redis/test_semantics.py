"""RedisEngine.run takes what Engine.run takes where it makes sense across hosts: retries
on a node's death, named queues, and a cancel that reaches the node running the call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.redis import JobRejected, RedisEngine
from tests.helpers import pid_alive

from . import killer_tasks, tasks
from .conftest import Node, wait_until

pytestmark = pytest.mark.redis

WAIT_S = 60.0


async def test_cancelling_the_caller_stops_the_call_on_its_node(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    node = start_node()
    started, ended = tmp_path / "started", tmp_path / "ended"
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        call = asyncio.create_task(
            engine.run(tasks.started_then_ended, str(started), str(ended), 30.0)
        )
        await wait_until(started.exists, WAIT_S)
        await wait_until(lambda: started.read_text() != "", WAIT_S)
        worker = int(started.read_text())
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(lambda: not pid_alive(worker), WAIT_S)  # killed, not left to run
        await wait_until(lambda: "its caller stopped waiting" in node.text(), WAIT_S)
        assert await engine.run(tasks.add, 2, 2) == 4  # a fresh worker serves
        assert engine.stats()["cancelled"] == 1
    assert not ended.exists()


async def test_a_call_cancelled_before_any_node_read_it_never_runs(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    started, ended = tmp_path / "started", tmp_path / "ended"
    raw = aioredis.Redis.from_url(redis_url)
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        call = asyncio.create_task(
            engine.run(tasks.started_then_ended, str(started), str(ended), 0.0)
        )
        await wait_until(lambda: engine.stats()["submitted"] == 1)
        async with asyncio.timeout(WAIT_S):
            while not await raw.xlen(f"{{{prefix}}}:jobs"):
                await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with asyncio.timeout(WAIT_S):
            while await raw.xlen(f"{{{prefix}}}:jobs"):  # taken off the stream
                await asyncio.sleep(0.02)
        start_node()
        assert await engine.run(tasks.add, 1, 1) == 2  # the node is up and consuming
    await raw.aclose()
    assert not started.exists()


async def test_a_named_queue_is_served_only_by_its_own_nodes(
    redis_url: str, prefix: str, start_node: Callable[..., Node]
) -> None:
    start_node("--queue", "parse")
    raw = aioredis.Redis.from_url(redis_url)
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        assert await engine.run(tasks.add, 1, 2, queue="parse") == 3
        waiting = asyncio.create_task(engine.run(tasks.add, 5, 5))  # the default queue
        async with asyncio.timeout(WAIT_S):
            while not await raw.xlen(f"{{{prefix}}}:jobs"):
                await asyncio.sleep(0.02)
        assert await engine.run(tasks.add, 2, 2, queue="parse") == 4  # served after it
        groups: Any = (
            await raw.xinfo_groups(f"{{{prefix}}}:jobs")
            if await raw.exists(f"{{{prefix}}}:jobs")
            else []
        )
        assert groups == []  # no node ever read the default queue
        assert not waiting.done()
        start_node()
        assert await asyncio.wait_for(waiting, WAIT_S) == 10
        with pytest.raises(ValueError, match="queue name"):
            await engine.run(tasks.add, 1, 1, queue="no spaces")
    await raw.aclose()


async def test_retries_bound_how_often_a_job_may_take_a_node_down(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    nodes = [start_node("--import", "tests.redis.killer_tasks") for _ in range(3)]
    deliveries = tmp_path / "deliveries.txt"
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        with pytest.raises(JobRejected, match=r"delivered 3 times \(retries=1"):
            await asyncio.wait_for(
                engine.run(killer_tasks.kill_node, str(deliveries), retries=1), WAIT_S
            )
    assert len(deliveries.read_text().splitlines()) == 2  # run twice, refused the third time
    assert sum(node.process.poll() is None for node in nodes) == 1
