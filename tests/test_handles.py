"""engine.submit's public handle, submit_batch, and the observer seam: real workers, by pid."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import hybrid
from hybrid.shared import MemoryCache, leftover_segments
from tests import tasks
from tests.conftest import MakeEngine
from tests.helpers import wait_for_full_strength, wait_until_gone, worker_pids
from tests.ops import worker_tasks

MiB = 1 << 20


class Recorder:
    """An observer that keeps every event, by point."""

    def __init__(self) -> None:
        self.events: dict[str, list[hybrid.TaskEvent]] = {
            "submitted": [], "started": [], "settled": [],
        }  # fmt: skip

    def task_submitted(self, event: hybrid.TaskEvent) -> None:
        self.events["submitted"].append(event)

    def task_started(self, event: hybrid.TaskEvent) -> None:
        self.events["started"].append(event)

    def task_settled(self, event: hybrid.TaskEvent) -> None:
        self.events["settled"].append(event)

    def outcomes(self) -> dict[str, str | None]:
        return {event.function: event.outcome for event in self.events["settled"]}


async def test_a_handle_gives_the_result_the_worker_and_the_times(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    handle = await engine.submit(tasks.sleep_and_pid, 0.2)
    assert isinstance(handle, hybrid.TaskHandle)
    assert not handle.done()
    assert handle.function == "sleep_and_pid"
    assert handle.pool == "default"
    assert isinstance(handle.id, int)
    pid = await handle
    assert handle.done()
    assert handle.result() == pid
    assert pid in worker_pids(engine)
    assert handle.worker_pid == pid
    assert handle.run_s is not None
    assert 0.2 <= handle.run_s < 2.0
    assert handle.queue_wait_s is not None
    assert handle.queue_wait_s >= 0.0


async def test_a_call_queued_behind_another_reports_its_wait(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    first = await engine.submit(tasks.sleep_then, 0.3)
    second = await engine.submit(tasks.sleep_then, 0.0, "second")
    assert await second == "second"
    await first
    assert second.queue_wait_s is not None
    assert second.queue_wait_s >= 0.25


async def test_cancelling_a_handle_kills_its_running_worker(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    started = tmp_path / "started"
    handle = await engine.submit(worker_tasks.mark_then_sleep, str(started), 30.0)
    async with asyncio.timeout(10):
        while not started.exists():  # running in the worker, not only sent to it
            await asyncio.sleep(0.01)
    old_pids = worker_pids(engine)
    assert handle.cancel()
    assert not handle.cancel()  # already settled
    with pytest.raises(asyncio.CancelledError):
        await handle
    assert handle.cancelled()
    await wait_until_gone(old_pids, timeout_s=10)
    await wait_for_full_strength(engine)
    assert set(worker_pids(engine)).isdisjoint(old_pids)
    assert await engine.run(tasks.square, 3) == 9


async def test_a_cancelled_waiter_withdraws_a_queued_call(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    blocker = await engine.submit(tasks.sleep_then, 0.3)
    queued = await engine.submit(tasks.record_call, "/nonexistent/never-written", 1)
    waiter = asyncio.ensure_future(_await(queued))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await blocker
    assert queued.cancelled()
    assert engine.stats().cancelled == 1
    assert engine.stats().completed == 1


async def _await(handle: hybrid.TaskHandle[int]) -> int:
    return await handle


async def test_submit_goes_through_the_cache_like_run(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    cache = MemoryCache()
    first = await engine.submit(tasks.cached_lookup, 7, cache=cache)
    second = await engine.submit(tasks.cached_lookup, 7, cache=cache)
    pid, warm = await first
    assert (pid, warm) == await second
    assert not warm
    assert pid in worker_pids(engine)
    assert engine.stats().completed == 1  # identical calls at once ran once
    assert await engine.run(tasks.cached_lookup, 7, cache=cache) == (pid, False)
    assert engine.stats().completed == 1  # and the next one came from the cache


async def test_submit_sends_a_large_buffer_through_shared_memory(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1, share_threshold_bytes=MiB)
    handle = await engine.submit(tasks.live_segments_of, bytes(4 * MiB), os.getpid())
    size, segments = await handle
    assert size == 4 * MiB
    assert segments >= 1  # the argument sat in a segment while the call ran
    assert handle.worker_pid in worker_pids(engine)
    assert handle.run_s is not None
    assert leftover_segments() == []
    assert await engine.run(tasks.live_segments_of, bytes(10), os.getpid()) == (10, 0)


async def test_a_batch_settles_each_call_on_its_own(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    handle = await engine.submit_batch(tasks.fail_on_odd, [(x,) for x in range(6)])
    results = await handle
    assert len(results) == 6
    assert [result.ok for result in results] == [True, False] * 3
    assert [result.value for result in results if result.ok] == [0, 2, 4]
    errors = [result.error for result in results if not result.ok]
    assert all(isinstance(error, ValueError) for error in errors)
    assert str(errors[0]) == "1 is odd"
    assert engine.stats().round_trips == 1


async def test_a_batch_whose_worker_dies_settles_exactly_the_calls_it_touched(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    log = str(tmp_path / "calls")
    calls = [(log, value, 2) for value in (1, 2, 3)]
    results = await (await engine.submit_batch(tasks.record_then_crash_on, calls))
    assert results[0] == hybrid.CallResult(True, 1, None)
    assert isinstance(results[1].error, hybrid.WorkerCrashed)
    assert results[2] == hybrid.CallResult(True, 3, None)  # ran once, on the replacement
    assert Path(log).read_text().split() == ["1", "2", "3"]


async def test_observers_see_every_call_through_every_path(make_engine: MakeEngine) -> None:
    recorder = Recorder()
    engine = await make_engine(workers=1, observers=[recorder], max_queued=1)
    assert await engine.run(tasks.square, 4) == 16
    with pytest.raises(ValueError, match="bad"):
        await engine.run(tasks.raise_value_error, "bad")
    with pytest.raises(hybrid.WorkerCrashed):
        await engine.run(tasks.exit_now, 3)
    with pytest.raises(hybrid.TaskTimeout):
        await engine.run(tasks.sleep_then, 10, timeout=0.2)
    assert [x async for x in engine.map(tasks.pid_of, range(3))]
    await (await engine.submit_batch(tasks.square, [(1,), (2,)]))
    running = await engine.submit(tasks.sleep_then, 0.5)
    queued = await engine.submit(tasks.sleep_then, 0.0)
    with pytest.raises(hybrid.Overloaded):
        await engine.run(tasks.pid_of, block=False)
    queued.cancel()
    await running
    assert recorder.outcomes() == {
        "square": "completed",
        "raise_value_error": "failed",
        "exit_now": "crashed",
        "sleep_then": "completed",
        "pid_of": "rejected",
    }
    settled = recorder.events["settled"]
    by_outcome = {event.outcome for event in settled if event.function == "sleep_then"}
    assert by_outcome == {"timed_out", "cancelled", "completed"}
    map_calls = sum(e.calls for e in settled if e.function == "pid_of" and e.outcome == "completed")
    assert map_calls == 3
    started = {event.task_id for event in recorder.events["started"]}
    completed = [event for event in settled if event.outcome == "completed"]
    assert all(event.task_id in started for event in completed)
    assert all(event.run_s is not None and event.worker_pid for event in completed)
    submitted = {event.task_id for event in recorder.events["submitted"]}
    assert {event.task_id for event in settled} <= submitted


async def test_an_observer_that_raises_disturbs_nothing(
    make_engine: MakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def task_settled(self, event: hybrid.TaskEvent) -> None:
            raise RuntimeError("observer bug")

    engine = await make_engine(workers=1)
    engine.add_observer(Broken())
    assert await engine.run(tasks.square, 5) == 25
    await asyncio.sleep(0)  # settle callbacks run on the next loop turn
    assert "observer bug" in caplog.text
    assert await engine.run(tasks.square, 6) == 36
