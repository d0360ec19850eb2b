"""Deadlines across hosts whose clocks disagree: a node moves a job's deadline onto its own
clock by the offset the client's beats show, so it drops exactly the jobs really late."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import hybrid
from adapters.redis import NodeConfig, RedisEngine, WorkerNode

from . import tasks
from .conftest import serving, wait_until

pytestmark = pytest.mark.redis

WAIT_S = 30.0
SKEW_NS = 3_000_000_000


def shifted(offset_ns: int) -> Callable[[], int]:
    return lambda: time.time_ns() + offset_ns


@contextlib.asynccontextmanager
async def node_with_clock(
    url: str, prefix: str, offset_ns: int, **options: Any
) -> AsyncIterator[WorkerNode]:
    options.setdefault("wall_ns", shifted(offset_ns))
    config = NodeConfig(
        url=url, prefix=prefix, modules=("tests.redis.tasks",), workers=1, **options
    )
    async with serving(WorkerNode(config)) as node:
        yield node


async def knows_the_clock_of(node: WorkerNode, engine: RedisEngine) -> None:
    peer = f"client:{engine.client_id}".encode()
    await wait_until(lambda: node.clock_offset_s(peer) is not None)


@pytest.mark.parametrize("offset_ns", [SKEW_NS, -SKEW_NS])
async def test_a_node_whose_clock_is_off_runs_the_jobs_still_in_time(
    redis_url: str, prefix: str, offset_ns: int
) -> None:
    async with (
        node_with_clock(redis_url, prefix, offset_ns) as node,
        RedisEngine(redis_url, prefix=prefix, beat_interval_s=0.05) as engine,
    ):
        await knows_the_clock_of(node, engine)
        offset_s = node.clock_offset_s(f"client:{engine.client_id}".encode())
        assert offset_s == pytest.approx(offset_ns / 1e9, abs=0.3)
        # Without the offset, a +3 s node would drop these as 1 s late.
        results = await asyncio.gather(
            *(engine.run(tasks.add, i, 1, deadline=2.0) for i in range(5))
        )
        assert results == [1, 2, 3, 4, 5]


async def test_a_node_whose_clock_is_behind_still_drops_a_job_really_late(
    redis_url: str, prefix: str
) -> None:
    async with (
        node_with_clock(redis_url, prefix, -SKEW_NS, concurrency=1) as node,
        RedisEngine(redis_url, prefix=prefix, beat_interval_s=0.05) as engine,
    ):
        await knows_the_clock_of(node, engine)
        busy = asyncio.create_task(engine.run(tasks.slow, 0, 1.0))  # holds the only slot
        await wait_until(lambda: node.counters["received"] == 1)
        # It waits in the stream past its deadline; a node 3 s behind would think it early.
        with pytest.raises(hybrid.TaskTimeout):
            await asyncio.wait_for(engine.run(tasks.add, 1, 1, deadline=0.4), WAIT_S)
        await asyncio.wait_for(busy, WAIT_S)


def drifting(offset_ns: int, ppm: float) -> Callable[[], int]:
    """A clock ``offset_ns`` ahead that gains ``ppm`` millionths of each second."""
    origin = time.time_ns()
    return lambda: (now := time.time_ns()) + offset_ns + int((now - origin) * ppm / 1e6)


async def test_a_node_3_s_fast_and_drifting_is_judged_like_a_synchronised_one(
    redis_url: str, prefix: str
) -> None:
    async with (
        node_with_clock(redis_url, prefix, 0) as judge,
        node_with_clock(redis_url, prefix, 0, wall_ns=drifting(SKEW_NS, 20.0)) as fast,
        RedisEngine(redis_url, prefix=prefix) as engine,
    ):
        await wait_until(lambda: any(view.name == fast.name for view in judge.peers()))
        for _ in range(10):  # beats keep coming: never suspected, let alone convicted
            nodes = [view for view in judge.peers() if view.role == "node"]
            assert [view.state for view in nodes] == ["alive"]
            await asyncio.sleep(0.3)
        view = next(view for view in judge.peers() if view.name == fast.name)
        assert view.clock_offset_s == pytest.approx(-SKEW_NS / 1e9, abs=0.3)
        results = await asyncio.gather(
            *(engine.run(tasks.add, i, 0, deadline=2.0) for i in range(20))
        )
        assert results == list(range(20))  # both nodes served, none dropped as late
