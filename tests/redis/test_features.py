"""Newer Redis commands where the server has them, the Redis 7.0 ones otherwise.

Both paths run against real servers: Debian's redis-server 7.0 and a Redis 8.2 binary
(``.ci/newer-redis.sh``). On 8.2 a finished job's entry is acknowledged and deleted in
one step (``XACKDEL ... ACKED``) and the stream is trimmed with ``XTRIM ... ACKED``; on 7.0
with ``XACK`` and ``XTRIM MINID``. Either way nothing another group still needs is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.redis import RedisEngine
from adapters.redis.conn import GROUP, Keys
from adapters.redis.features import FeatureCache, detect
from adapters.redis.scripts import Scripts

from . import tasks
from .conftest import Node, PrivateRedis, wait_for_length

pytestmark = pytest.mark.redis

TRIM_INTERVAL_S = 0.1  # the node's --trim-interval, shortened from 2 s so the test waits less
TRIM_WAIT_S = 1.0  # several trim passes (the node trims at most once per 0.2 s beat)


@pytest.fixture
async def admin(each_redis: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(each_redis.url)
    yield client
    await client.aclose()


def is_newer(server: PrivateRedis) -> bool:
    return server.binary is not None


async def test_detection_names_what_each_real_server_has(
    each_redis: PrivateRedis, admin: aioredis.Redis
) -> None:
    cache = FeatureCache()
    features = await cache.refresh(admin)
    assert features.ackdel is is_newer(each_redis)
    assert features.version.startswith("8.2" if is_newer(each_redis) else "7.")
    await cache.refresh(admin)
    assert cache.detections == 1  # asked once, not per command
    cache.invalidate()
    assert await cache.refresh(admin) == features
    assert cache.detections == 2


async def test_finished_entries_leave_the_stream_and_unread_ones_stay(
    each_redis: PrivateRedis,
    admin: aioredis.Redis,
    prefix: str,
    start_node: Callable[..., Node],
) -> None:
    jobs = Keys(prefix).jobs
    node = start_node("--trim-interval", str(TRIM_INTERVAL_S), url=each_redis.url)
    assert ("ready (Redis 8.2" in node.text()) is is_newer(each_redis)  # it says which path
    async with RedisEngine(each_redis.url, prefix=prefix) as engine:
        assert await asyncio.gather(*(engine.run(tasks.add, i, 1) for i in range(20))) == [
            i + 1 for i in range(20)
        ]
        if is_newer(each_redis):
            assert await admin.xlen(jobs) == 0  # deleted with its ack, not by a later trim
        await wait_for_length(admin, jobs, 0)
        assert await admin.xlen(jobs) == 0

        # A second group that has read nothing yet: the node's group acknowledges every
        # entry, but none may go while the audit group still needs it.
        await admin.xgroup_create(jobs, "audit", id="$")
        await asyncio.gather(*(engine.run(tasks.add, i, 2) for i in range(10)))
        await asyncio.sleep(TRIM_WAIT_S)
        assert await admin.xlen(jobs) == 10
        read: Any = await admin.xreadgroup("audit", "auditor", {jobs: ">"}, count=100)
        ids = [entry_id for _, entries in read for entry_id, _ in entries]
        assert len(ids) == 10
        await admin.xack(jobs, "audit", *ids)
        await wait_for_length(admin, jobs, 0)
        assert await admin.xlen(jobs) == 0


async def test_trimming_a_stream_whose_group_is_gone_drops_nothing(
    newer_redis: PrivateRedis, prefix: str
) -> None:
    # Regression guard: with no group, XTRIM ... ACKED takes every entry as acknowledged.
    client = aioredis.Redis.from_url(newer_redis.url)
    jobs = Keys(prefix).jobs
    try:
        for n in range(5):
            await client.xadd(jobs, {b"n": str(n).encode()})
        assert await Scripts(client).trim_acked(keys=[jobs]) == -1
        assert await client.xlen(jobs) == 5
        assert await Scripts(client).trim_acked(keys=[Keys(prefix).dead]) == -1  # no stream
        bare = "XTRIM", jobs, "MAXLEN", "=", 0, "ACKED"
        assert await client.execute_command(*bare) == 5  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


async def test_a_stale_newer_flag_on_a_7_0_server_still_acknowledges(
    private_redis: PrivateRedis, prefix: str
) -> None:
    # After a failover to an older server, a script may run once with the 8.2 flag before
    # the features are asked again: it falls back to XACK instead of failing the batch.
    private_redis.start()
    client = aioredis.Redis.from_url(private_redis.url)
    keys = Keys(prefix)
    try:
        assert not (await detect(client)).ackdel
        await client.xgroup_create(keys.jobs, GROUP, id="0", mkstream=True)
        entry_id = await client.xadd(keys.jobs, {b"x": b"1"})
        await client.xreadgroup(GROUP, "me", {keys.jobs: ">"})  # type: ignore[arg-type]
        reply = keys.reply("c")
        args: list[bytes | str | int] = [GROUP, b"me", 60_000, b"1", entry_id, reply]
        args += [b"job-1", b"m", b"\x90", b""]  # job id, codec, outcomes, no signature
        assert await Scripts(client).finish(keys=[keys.jobs], args=args) == [0, []]
        assert (await client.xpending(keys.jobs, GROUP))["pending"] == 0
        assert await client.xlen(reply) == 1
    finally:
        await client.aclose()


async def test_a_node_asks_again_when_redis_comes_back_as_another_version(
    private_redis: PrivateRedis,
    newer_redis_server: str,
    prefix: str,
    start_node: Callable[..., Node],
) -> None:
    private_redis.binary = newer_redis_server
    private_redis.start()
    node = start_node("--log-level", "INFO", url=private_redis.url)
    async with RedisEngine(private_redis.url, prefix=prefix) as engine:
        assert await asyncio.wait_for(engine.run(tasks.add, 1, 2), 30) == 3
        private_redis.stop()
        private_redis.binary = None  # the same port, now Debian's 7.0
        private_redis.start()
        assert await asyncio.wait_for(engine.run(tasks.add, 2, 3), 60) == 5
    assert node.stop() == 0
    log = node.text()
    newer = log.index("Redis 8.2.3, newer commands used: XACKDEL, XTRIM ACKED")
    assert log.index("newer commands used: none: the Redis 7.0 commands", newer) > newer
