"""Test-wide settings: which event loops an async test runs on, engines that close themselves.

Choosing the loops: a test runs on both asyncio and uvloop only when its behaviour depends on
the loop, that is when it exercises the engine's own loop-facing code (start and close,
cancellation, timeouts, the lag watch, wake-ups, the messaging endpoint). Such a module says so
with ``pytestmark = pytest.mark.both_loops``. Everything else (Redis cluster behaviour, the
crawler, shared memory, the web and ops adapters) runs on one loop, asyncio: those tests start
whole programs and servers, and a second pass would only repeat the same Redis or HTTP traffic.
When in doubt, ask whether a uvloop-only bug could change the test's outcome; if yes, mark it.
``HYBRID_TEST_LOOPS=uvloop`` (or ``asyncio``) narrows every test to that loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest

import hybrid


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Both loops for a ``both_loops`` test, the first available one for any other."""
    factories = available_loops()
    if item.get_closest_marker("both_loops") is None:
        name = next(iter(factories))
        return {name: factories[name]}
    return factories


def available_loops() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """asyncio, then uvloop (required under CI=true); HYBRID_TEST_LOOPS narrows the choice."""
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


@pytest.fixture(autouse=True)
def _machine_share(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Run an ``alone`` test while no other test of this run runs, every other test alongside.

    The suite runs in parallel (xdist), so a test that measures how much CPU a process of its
    own gets in a fixed window (and asserts a floor) would measure the other tests instead.
    It takes the run's lock exclusively; the rest share it. The gate makes the wait fair: once
    an ``alone`` test holds it, no new test starts, so it waits only for those already running.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's directory, shared by its workers
    alone = request.node.get_closest_marker("alone") is not None
    with open(root / "machine.gate", "a") as gate, open(root / "machine.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


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
