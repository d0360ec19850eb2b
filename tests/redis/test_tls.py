"""``rediss://``: the client and a worker node over TLS to a server with its own CA."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.redis import RedisEngine

from . import tasks
from .conftest import Node, TlsRedis

pytestmark = pytest.mark.redis


async def test_client_and_node_run_a_job_over_tls(
    tls_redis: TlsRedis, prefix: str, start_node: Callable[..., Node]
) -> None:
    node = start_node(url=tls_redis.url)
    async with RedisEngine(tls_redis.url, prefix=prefix) as engine:
        assert await engine.run(tasks.add, 2, 3) == 5
    assert node.stop() == 0
    assert node.counters()["completed"] == 1


async def test_an_untrusted_certificate_is_refused(tls_redis: TlsRedis, prefix: str) -> None:
    untrusted = f"rediss://127.0.0.1:{tls_redis.server.port}/0"  # the system CAs only
    with pytest.raises(RedisConnectionError, match="certificate verify failed"):
        async with RedisEngine(untrusted, prefix=prefix):
            pass
