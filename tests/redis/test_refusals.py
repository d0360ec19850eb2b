"""Redis saying no (out of memory, a read-only replica, a key of the wrong type, no
permission) surfaces as a clear RedisFault or a recovery: never a hang, never a job
acknowledged without its result, never a batch dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.redis import NodeConfig, RedisEngine, RedisFault, WorkerNode

from . import tasks
from .conftest import PrivateRedis, free_port, serving, wait_until

pytestmark = pytest.mark.redis

WAIT_S = 30.0


@pytest.fixture
async def raw(private_redis: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    """A started private Redis, and a plain client of it closed at the end."""
    private_redis.start()
    client = aioredis.Redis.from_url(private_redis.url)
    yield client
    await client.aclose()


async def fill_memory(raw: aioredis.Redis) -> None:
    """Make Redis full: every command that may grow memory (XADD, HSET) is refused."""
    await raw.config_set("maxmemory-policy", "noeviction")
    await raw.config_set("maxmemory", 1)


async def test_a_job_redis_will_not_take_fails_with_the_reason(
    private_redis: PrivateRedis, raw: aioredis.Redis
) -> None:
    async with RedisEngine(private_redis.url, prefix="oom") as engine:
        await fill_memory(raw)
        with pytest.raises(RedisFault, match="OOM"):
            await asyncio.wait_for(engine.run(tasks.add, 1, 2), WAIT_S)
        await raw.config_set("maxmemory", 0)
        node = WorkerNode(NodeConfig(url=private_redis.url, prefix="oom",
                                     modules=("tests.redis.tasks",), workers=1))  # fmt: skip
        async with serving(node):
            assert await asyncio.wait_for(engine.run(tasks.add, 1, 2), WAIT_S) == 3


async def test_a_result_redis_refuses_is_kept_unacknowledged_until_it_is_taken(
    private_redis: PrivateRedis, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    node = WorkerNode(NodeConfig(url=private_redis.url, prefix="late",
                                 modules=("tests.redis.tasks",), workers=1))  # fmt: skip
    caplog.set_level(logging.ERROR, logger="hybrid.redis")
    async with (
        serving(node),
        RedisEngine(private_redis.url, prefix="late", fault_patience_s=WAIT_S) as engine,
    ):
        call = asyncio.create_task(engine.run(tasks.slow, 1, 0.5))
        await wait_until(lambda: node.counters["received"] == 1)
        await fill_memory(raw)
        await wait_until(lambda: node.counters["store_refused"] >= 1)
        pending: Any = await raw.xpending("{late}:jobs", "workers")
        assert pending["pending"] == 1  # not acked without its result
        assert not call.done()
        await raw.config_set("maxmemory", 0)
        value, _pid = await asyncio.wait_for(call, WAIT_S)
        assert value == 1
        await wait_until(lambda: node.counters["completed"] == 1)
    assert "Redis refused its result (OOM" in caplog.text


async def test_a_reply_stream_of_the_wrong_type_fails_the_calls_not_hangs_them(
    private_redis: PrivateRedis, raw: aioredis.Redis
) -> None:
    async with RedisEngine(private_redis.url, prefix="wrong") as engine:
        call = asyncio.create_task(engine.run(tasks.add, 1, 2))
        await wait_until(lambda: engine.stats()["submitted"] == 1)
        await raw.delete(engine.keys.reply(engine.client_id))
        await raw.set(engine.keys.reply(engine.client_id), "not a stream")
        with pytest.raises(RedisFault, match="WRONGTYPE"):
            await asyncio.wait_for(call, WAIT_S)
        with pytest.raises(RedisFault, match="WRONGTYPE"):  # and every later call at once
            await asyncio.wait_for(engine.run(tasks.add, 1, 2), WAIT_S)


async def test_no_permission_to_add_jobs_fails_the_call_at_once(
    private_redis: PrivateRedis, raw: aioredis.Redis
) -> None:
    await raw.acl_setuser(
        "reader", enabled=True, passwords=["+pw"], keys=["*"],
        commands=["+@all", "-xadd"],
    )  # fmt: skip
    url = f"redis://reader:pw@127.0.0.1:{private_redis.port}/0"
    async with RedisEngine(url, prefix="noperm") as engine:
        with pytest.raises(RedisFault, match="NOPERM"):
            await asyncio.wait_for(engine.run(tasks.add, 1, 2), WAIT_S)


async def test_a_read_only_replica_fails_the_call_after_a_bounded_retry(
    private_redis: PrivateRedis,
) -> None:
    private_redis.start()
    replica = PrivateRedis(free_port(), options=("--replicaof", "127.0.0.1",
                                                 str(private_redis.port)))  # fmt: skip
    replica.start()
    try:
        async with RedisEngine(replica.url, prefix="ro") as engine:
            with pytest.raises(RedisFault, match="READONLY"):
                await asyncio.wait_for(engine.run(tasks.add, 1, 2), WAIT_S)
    finally:
        replica.stop()
