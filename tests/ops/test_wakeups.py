"""A web app's periodic watches share the loop's wake-ups (the grid of ``hybrid.ticks``)."""

from __future__ import annotations

import asyncio
import selectors
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from adapters import aiohttp_web
from hybrid import ticks
from tests.ops.worker_tasks import mark_then_sleep

COUNTED_S = 1.5  # span over which the loop's sleeps are counted
WATCH_HZ = 10  # the worker watch, the lag watch and the disconnect check each look 10 a second


class CountingSelector(selectors.DefaultSelector):
    """Counts the times the loop goes to sleep (a select that may block)."""

    def __init__(self) -> None:
        super().__init__()
        self.counting = False
        self.sleeps = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.counting and (timeout is None or timeout > 0):
            self.sleeps += 1
        events: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        return events


async def loop_sleeps_while_a_request_waits(selector: CountingSelector, started: Path) -> int:
    async def slow(request: web.Request) -> web.Response:
        await aiohttp_web.offload(request, mark_then_sleep, str(started), COUNTED_S + 3.0)
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/slow", slow)
    aiohttp_web.setup(app, workers=1)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            request = asyncio.ensure_future(http.get(f"http://127.0.0.1:{port}/slow"))
            while not started.exists():
                await asyncio.sleep(0.01)
            # The disconnect check began with the request: a phase of its own, unless
            # it is on the grid of the watches that started with the app.
            await asyncio.sleep(0.3)
            selector.counting = True
            await asyncio.sleep(COUNTED_S)
            selector.counting = False
            request.cancel()
    finally:
        await runner.cleanup()
    return selector.sleeps


def test_the_watches_of_a_web_app_wake_its_loop_together(tmp_path: Path) -> None:
    """Regression: the disconnect check, started by the first waiting request, woke the
    loop on a phase of its own, 10 more wake-ups a second on top of the engine's watch and
    the lag watch (each wake-up of a sleeping process costs it ~0.2 ms on a VM)."""
    selector = CountingSelector()
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        sleeps = runner.run(loop_sleeps_while_a_request_waits(selector, tmp_path / "started"))
    # One wake-up per tick of the shared grid (the sleep of this test's own wait is one
    # more); three watches on phases of their own would make it about three times that.
    assert sleeps <= 1.5 * WATCH_HZ * COUNTED_S + 2, sleeps


def test_until_next_lands_on_the_grid() -> None:
    assert ticks.until_next(10.03, 0.1) == pytest.approx(0.07)
    assert ticks.until_next(10.0, 0.1) == pytest.approx(0.1)
    assert ticks.until_next(7.25, 0.5) == pytest.approx(0.25)
    for now_s in (0.0, 3.14159, 1234.5678, time.monotonic()):
        at = now_s + ticks.until_next(now_s, 0.1)
        assert at / 0.1 == pytest.approx(round(at / 0.1), abs=1e-6)


def test_until_next_takes_a_time_just_short_of_a_point_as_on_it() -> None:
    # A timer that fired a millisecond early must not wake the loop again a moment later.
    assert ticks.until_next(10.099, 0.1) == pytest.approx(0.101)
    assert ticks.until_next(10.09, 0.1) == pytest.approx(0.01)


@pytest.mark.parametrize("interval_s", [0.0, -1.0, float("nan")])
def test_until_next_refuses_an_interval_that_is_not_positive(interval_s: float) -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        ticks.until_next(1.0, interval_s)
