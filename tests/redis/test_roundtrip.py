"""The client's surface over a real Redis and a real ``hybrid worker`` node."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

import hybrid
from adapters.redis import JobRejected, RedisEngine

from . import tasks
from .conftest import Node

pytestmark = pytest.mark.redis


async def test_results_and_remote_errors_match_the_local_engine(
    redis_url: str, prefix: str, start_node: Callable[..., Node]
) -> None:
    node = start_node()
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        assert await engine.run(tasks.add, 2, 3) == 5
        x, pid = await engine.run(tasks.where, 7)
        assert (x, pid) != (7, os.getpid())

        with pytest.raises(tasks.TaskFailed, match="boom") as failed:
            await engine.run(tasks.fail, "boom")
        assert isinstance(failed.value.__cause__, hybrid.RemoteTraceback)
        assert "in fail" in failed.value.__cause__.text

        with pytest.raises(hybrid.TaskTimeout):
            await engine.run(tasks.slow, 1, 10.0, timeout=0.3)
        with pytest.raises(hybrid.WorkerCrashed) as crashed:
            await engine.run(tasks.crash)
        assert crashed.value.exitcode == 3
        with pytest.raises(hybrid.TaskTimeout):
            await engine.run(tasks.slow, 1, 10.0, deadline=0.2)
        assert engine.stats()["duplicate_results"] == 0
    assert node.stop() == 0


async def test_batched_paths_keep_order_and_values(
    redis_url: str, prefix: str, start_node: Callable[..., Node]
) -> None:
    start_node()
    async with RedisEngine(redis_url, prefix=prefix, chunk_calls=50) as engine:
        assert await engine.run_batch(tasks.noop, [(i,) for i in range(1000)]) == list(range(1000))
        assert [y async for y in engine.map(tasks.noop, range(300))] == list(range(300))
        unordered = [y async for y in engine.map(tasks.noop, range(300), ordered=False)]
        assert sorted(unordered) == list(range(300))
        stats = engine.stats()
    assert stats["submitted"] == 1000 // 50 + 2 * 300 // 50
    assert stats["duplicate_results"] == 0


async def test_functions_outside_the_allow_list_are_refused(
    redis_url: str, prefix: str, start_node: Callable[..., Node]
) -> None:
    start_node()
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        with pytest.raises(JobRejected, match=r"unknown task .*getcwd"):
            await engine.run(os.getcwd)


async def test_pickle_payloads_travel_signed(
    redis_url: str, prefix: str, start_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRID_SECRET", "test-secret")
    start_node()
    async with RedisEngine(redis_url, prefix=prefix, codec="pickle") as engine:
        assert await engine.run(tasks.echo, {1, 2}) == {1, 2}  # a set: msgpack cannot
    with pytest.raises(ValueError, match="secret"):
        RedisEngine(redis_url, prefix=prefix, codec="pickle", secret="")
