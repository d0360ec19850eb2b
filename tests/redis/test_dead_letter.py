"""A job that kills every node that runs it is dead-lettered after N deliveries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import hybrid
from adapters.redis import JobRejected, RedisEngine

from . import killer_tasks, tasks
from .conftest import Node

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MAX_DELIVERIES = 2
RESULT_WAIT_S = 60.0


async def test_a_job_that_kills_each_node_is_dead_lettered_after_max_deliveries(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    options = ("--import", "tests.redis.killer_tasks", "--max-deliveries", str(MAX_DELIVERIES))
    nodes = [start_node(*options) for _ in range(MAX_DELIVERIES + 1)]
    deliveries = tmp_path / "deliveries.txt"
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        with pytest.raises(JobRejected, match=r"delivered 3 times \(max_deliveries=2\)"):
            await asyncio.wait_for(
                engine.run(killer_tasks.kill_node, str(deliveries)), RESULT_WAIT_S
            )
        # Each delivery up to the limit took one node down; the next was refused unrun.
        assert len(deliveries.read_text().splitlines()) == MAX_DELIVERIES
        alive = [node for node in nodes if node.process.poll() is None]
        assert len(alive) == 1
        assert await engine.run(tasks.add, 1, 2) == 3  # the survivor still serves

    client = aioredis.Redis.from_url(redis_url)
    try:
        letters: Any = await client.xrange(f"{{{prefix}}}:dead")
        assert [fields[b"dl:reason"] for _, fields in letters] == [
            b"delivered 3 times (max_deliveries=2)"
        ]
        assert letters[0][1][b"f"] == b"tests.redis.killer_tasks:kill_node"
        summary = await client.xpending(f"{{{prefix}}}:jobs", "workers")
        assert summary["pending"] == 0
    finally:
        await client.aclose()
    assert alive[0].stop() == 0
    assert alive[0].counters()["dead_lettered"] == 1


async def test_a_job_that_only_kills_its_worker_process_fails_once_and_is_not_redelivered(
    redis_url: str, prefix: str, start_node: Callable[..., Node]
) -> None:
    node = start_node("--max-deliveries", str(MAX_DELIVERIES))
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        for _ in range(MAX_DELIVERIES + 1):
            with pytest.raises(hybrid.WorkerCrashed):
                await engine.run(tasks.crash)
        assert await engine.run(tasks.add, 1, 2) == 3
    assert node.stop() == 0
    counters = node.counters()
    assert counters["dead_lettered"] == 0
    assert counters["completed"] == MAX_DELIVERIES + 2
