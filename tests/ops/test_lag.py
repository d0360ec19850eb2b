"""The loop-lag watch: continuous measurement, and a warning naming what blocked the loop."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

import pytest

from hybrid.lag import LoopLagWatch

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py

BLOCK_S = 0.5


def block_the_loop(seconds: float) -> None:
    """A callback that should never run on an event loop: it holds it for ``seconds``."""
    time.sleep(seconds)


def block_in_a_library(seconds: float) -> None:
    """Blocks inside the standard library (a pure-Python busy wait in ``queue``)."""
    deadline = time.monotonic() + seconds
    pending: queue.Queue[int] = queue.Queue()
    while time.monotonic() < deadline:
        pending.put(1)
        pending.get()


async def test_a_blocking_callback_is_detected_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="hybrid.lag")
    seen_from_a_thread: list[float] = []
    async with LoopLagWatch(interval_s=0.02, warn_after_s=0.2) as watch:
        await asyncio.sleep(0.1)
        assert watch.samples > 0
        # A detector on another thread sees the stall while it happens.
        reader = threading.Timer(BLOCK_S / 2, lambda: seen_from_a_thread.append(watch.stalled_s()))
        reader.start()
        asyncio.get_running_loop().call_soon(block_the_loop, BLOCK_S)
        await asyncio.sleep(0.1)
        reader.join()
        assert watch.max_lag_s >= BLOCK_S * 0.8
    stall = watch.last_stall
    assert stall is not None
    assert stall.lag_s >= BLOCK_S * 0.8
    assert stall.where.endswith("in block_the_loop")
    assert seen_from_a_thread[0] >= 0.1
    warnings = [record.getMessage() for record in caplog.records if record.name == "hybrid.lag"]
    assert any("block_the_loop" in message for message in warnings)


def test_debug_mode_quotes_asyncios_slow_callback_report() -> None:
    async def main() -> LoopLagWatch:
        async with LoopLagWatch(interval_s=0.02, warn_after_s=0.2) as watch:
            await asyncio.sleep(0.05)
            asyncio.get_running_loop().call_soon(block_the_loop, BLOCK_S)
            await asyncio.sleep(0.1)
        return watch

    watch = asyncio.run(main(), debug=True)
    assert watch.last_stall is not None
    assert "block_the_loop" in watch.last_stall.slow_callback
    assert "block_the_loop" in watch.last_stall.describe()


async def test_the_watch_stops_cleanly() -> None:
    watch = LoopLagWatch(interval_s=0.01)
    watch.start()
    await asyncio.sleep(0.05)
    await watch.stop()
    assert not watch.running
    assert watch.stalled_s() == 0.0
    assert not any(thread.name == "hybrid-lag-sampler" for thread in threading.enumerate())


async def test_a_stall_inside_a_library_is_blamed_on_the_code_that_called_it() -> None:
    async with LoopLagWatch(interval_s=0.02, warn_after_s=0.2) as watch:
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().call_soon(block_in_a_library, BLOCK_S)
        await asyncio.sleep(0.1)
    stall = watch.last_stall
    assert stall is not None
    assert stall.where.endswith("in block_in_a_library")
    assert stall.where.startswith(__file__)
