"""Progress reported in a worker reaches the caller on its loop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from . import progress_tasks
from .conftest import MakeEngine


async def test_progress_reaches_the_callback_while_the_call_runs(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    go_on = tmp_path / "go-on"
    seen: list[tuple[float, float | None]] = []
    first_seen = asyncio.Event()

    def on_progress(done: float, total: float | None) -> None:
        seen.append((done, total))
        first_seen.set()

    call = asyncio.ensure_future(
        engine.run(progress_tasks.steps, 5, str(go_on), on_progress=on_progress)
    )
    async with asyncio.timeout(10):
        await first_seen.wait()  # the call is still waiting for go_on: progress came first
    assert seen == [(1.0, 5.0)]
    go_on.touch()
    pid = await asyncio.wait_for(call, 10)
    assert pid != os.getpid()
    assert seen[-1] == (5.0, 5.0)  # the last report arrives before the result
    assert seen == sorted(seen)


async def test_the_handle_shows_the_latest_progress(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    handle = await engine.submit(progress_tasks.without_total)
    assert handle.progress is None or handle.progress == (42.0, None)
    await handle
    assert handle.progress == (42.0, None)
    other = await engine.submit(progress_tasks.steps, 3)
    await other
    assert other.progress == (3.0, 3.0)


def test_report_progress_outside_a_worker_does_nothing() -> None:
    assert progress_tasks.steps(2) == os.getpid()
