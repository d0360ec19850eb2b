"""Test-wide settings: every async test runs on asyncio and on uvloop; children are checked."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

import hybrid


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Both loops by default; HYBRID_TEST_LOOPS=asyncio (or uvloop) narrows it."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
    else:
        factories["uvloop"] = uvloop.new_event_loop
    wanted = os.environ.get("HYBRID_TEST_LOOPS")
    if wanted:
        factories = {name: factory for name, factory in factories.items() if name in wanted}
    return factories


MakeEngine = Callable[..., Awaitable[hybrid.Engine]]


@pytest.fixture
async def make_engine() -> AsyncIterator[MakeEngine]:
    """Build engines that are closed (and their workers joined) when the test ends."""
    engines: list[hybrid.Engine] = []

    async def make(*args: Any, **kwargs: Any) -> hybrid.Engine:
        kwargs.setdefault("workers", 2)
        # Sizes stay as asked on a shared, busy test machine unless a test wants a monitor.
        kwargs.setdefault("monitor", None)
        engine = hybrid.Engine(*args, **kwargs)
        engines.append(engine)
        await engine.start()
        return engine

    yield make
    for engine in engines:
        await asyncio.wait_for(engine.close(cancel=True), timeout=30)


REDIS_URL = os.environ.get("HYBRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_url() -> str:
    """A reachable Redis; skipped only outside CI (CI=true makes a missing Redis an error)."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("redis-py is not installed")
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"CI needs Redis at {REDIS_URL}: {exc}") from exc
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()
    return REDIS_URL
