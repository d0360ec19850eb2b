"""The engine following pressure: a monitor's samples, the policy's decisions, real workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import hybrid
from hybrid.autoscale import AutoscaleConfig
from tests import tasks
from tests.conftest import MakeEngine
from tests.helpers import calls_recorded, worker_pids
from tests.resources.fakes import GIB, MIB, FakeMonitor

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py

FAST = AutoscaleConfig(
    min_workers=1,
    max_workers=3,
    cores=4,
    cooldown_s=0.1,
    grow_after_s=0.2,
    idle_shrink_after_s=None,
    recycle_interval_s=0.1,
)


async def until(condition, timeout_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def test_a_lasting_backlog_grows_the_pool_and_loses_nothing(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    monitor = FakeMonitor(cpu_count=4, cpu_percent=30.0)
    engine = await make_engine(workers=1, monitor=monitor, autoscale=FAST, sample_interval_s=0.05)
    record = tmp_path / "calls"
    work = [
        asyncio.ensure_future(engine.run(tasks.sleep_then_record, 0.1, str(record), n))
        for n in range(40)
    ]
    await until(lambda: engine.stats().workers == 3)
    assert await asyncio.gather(*work) == list(range(40))
    assert calls_recorded(record) == {n: 1 for n in range(40)}
    stats = engine.stats()
    assert stats.autoscale is not None
    assert stats.autoscale.decisions.get("grow.backlog", 0) >= 1
    assert stats.failed == stats.crashed == 0


async def test_memory_pressure_pauses_intake_and_resumes_below_low_water(
    make_engine: MakeEngine,
) -> None:
    monitor = FakeMonitor(cpu_count=4, memory_percent=30.0, memory_total_bytes=8 * GIB)
    engine = await make_engine(workers=1, monitor=monitor, autoscale=FAST, sample_interval_s=0.05)
    monitor.set(memory_percent=85.0)
    await until(lambda: engine.stats().paused_because is not None)
    with pytest.raises(hybrid.Overloaded, match="intake is paused"):
        await engine.run(tasks.square, 3, block=False)
    waiting = asyncio.ensure_future(engine.run(tasks.square, 4))  # waits for intake
    await asyncio.sleep(0.3)
    assert not waiting.done()
    monitor.set(memory_percent=75.0)  # below high water, above low water: still paused
    await asyncio.sleep(0.3)
    assert not waiting.done()
    monitor.set(memory_percent=60.0)
    assert await asyncio.wait_for(waiting, timeout=10) == 16
    assert engine.stats().paused_because is None


async def test_a_worker_past_its_rss_limit_is_recycled_by_the_policy(
    make_engine: MakeEngine,
) -> None:
    monitor = FakeMonitor(cpu_count=4)
    config = AutoscaleConfig(
        min_workers=1,
        max_workers=1,
        cores=4,
        max_rss_bytes=500 * MIB,
        idle_shrink_after_s=None,
        recycle_interval_s=0.1,
    )
    engine = await make_engine(workers=1, monitor=monitor, autoscale=config, sample_interval_s=0.05)
    (pid,) = worker_pids(engine)
    monitor.set(worker_rss={pid: 900 * MIB})
    await until(lambda: worker_pids(engine) not in ([pid], []))
    assert engine.stats().recycled_for_memory >= 1
    assert await engine.run(tasks.square, 5) == 25


async def test_autoscale_without_a_monitor_is_refused() -> None:
    with pytest.raises(ValueError, match="autoscale needs a monitor"):
        hybrid.Engine(autoscale=FAST, monitor=None)


async def test_stats_report_the_machines_truth(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    stats = engine.stats()
    assert stats.usable_cpus == hybrid.usable_cpus()
    assert stats.memory_limit_bytes > 0
    assert stats.autoscale is None


async def test_the_psutil_monitor_drives_a_real_engine(make_engine: MakeEngine) -> None:
    from adapters.psutil import PsutilMonitor

    engine = await make_engine(workers=2, monitor=PsutilMonitor(), sample_interval_s=0.1)
    results = [y async for y in engine.map(tasks.spin, [0.05] * 20)]
    assert len(results) == 20
    await asyncio.sleep(0.3)
    stats = engine.stats()
    assert stats.autoscale is not None
    assert 1 <= stats.autoscale.cap <= hybrid.usable_cpus()
    assert stats.failed == stats.crashed == 0


async def test_a_real_outside_cpu_hog_shrinks_the_pool(make_engine: MakeEngine) -> None:
    import multiprocessing

    from adapters.psutil import PsutilMonitor

    config = AutoscaleConfig(
        min_workers=1,
        max_workers=2,
        cores=2,
        cooldown_s=0.1,
        outside_after_s=0.5,
        idle_shrink_after_s=None,
    )
    engine = await make_engine(
        workers=2, monitor=PsutilMonitor(), autoscale=config, sample_interval_s=0.1
    )
    context = multiprocessing.get_context("spawn")
    hogs = [context.Process(target=tasks.spin, args=(8.0,)) for _ in range(2)]
    for hog in hogs:
        hog.start()
    try:
        await until(lambda: engine.stats().workers == 1, timeout_s=30)
        stats = engine.stats()
        assert stats.autoscale is not None
        assert stats.autoscale.outside_pressure
        assert stats.autoscale.decisions.get("shrink.outside_cpu", 0) >= 1
        assert await engine.run(tasks.square, 6) == 36  # still serving, with one worker
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()


async def test_a_call_killed_to_save_memory_runs_again_and_succeeds(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    monitor = FakeMonitor(cpu_count=4, memory_percent=30.0)
    engine = await make_engine(workers=1, monitor=monitor, autoscale=FAST, sample_interval_s=0.05)
    (pid,) = worker_pids(engine)
    record = tmp_path / "calls"
    call = asyncio.ensure_future(engine.run(tasks.sleep_then_record, 1.0, str(record), 7))
    await asyncio.sleep(0.2)
    monitor.set(memory_percent=97.0, worker_rss={pid: 900 * MIB})
    await until(lambda: pid not in worker_pids(engine))  # killed past the hard level
    monitor.set(memory_percent=30.0, worker_rss={})
    assert await asyncio.wait_for(call, timeout=30) == 7  # not the call's fault: it ran again
    stats = engine.stats()
    assert stats.crashed == 0
    assert stats.failed == 0
    assert stats.autoscale is not None
    assert stats.autoscale.decisions.get("kill.memory_hard", 0) >= 1
    assert calls_recorded(record) == {7: 1}  # the killed run never got to record it
