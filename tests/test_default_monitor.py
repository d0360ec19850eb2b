"""Engine() follows CPU and memory pressure by default when psutil is installed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

import hybrid
from hybrid import resources
from hybrid.autoscale import AutoscaleConfig

from . import tasks
from .conftest import MakeEngine
from .helpers import worker_pids
from .resources.fakes import GIB, MIB, FakeMonitor

QUICK = {"outside_after_s": 0.1, "cooldown_s": 0.1, "recycle_interval_s": 0.05}


async def until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def test_an_engine_follows_psutil_unless_told_not_to() -> None:
    async with hybrid.Engine(workers=1) as engine:
        state = engine.stats().autoscale
        assert state is not None  # a monitor was found and the policy runs
        assert engine._monitor is not None
        assert type(engine._monitor).__name__ == "PsutilMonitor"
    async with hybrid.Engine(workers=1, monitor=None) as engine:
        assert engine.stats().autoscale is None


def test_without_psutil_there_is_no_default_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "adapters.psutil", raising=False)
    assert resources.find_default_monitor() is None
    assert hybrid.Engine(workers=1)._monitor is None  # and the engine keeps its size


async def test_cpu_used_outside_the_engine_caps_the_pool_and_stats_name_the_rule(
    make_engine: MakeEngine,
) -> None:
    monitor = FakeMonitor(cpu_count=2)
    config = AutoscaleConfig(cores=2, idle_shrink_after_s=None, **QUICK)  # type: ignore[arg-type]
    engine = await make_engine(workers=2, monitor=monitor, autoscale=config, sample_interval_s=0.02)
    monitor.set(cpu_percent=95.0)  # the workers are idle: all of it is someone else's
    await until(lambda: engine.stats().workers == 1)  # max(1, floor(2 * 0.8))
    state = engine.stats().autoscale
    assert state is not None
    assert state.outside_pressure
    assert state.last_decision == "shrink.outside_cpu"
    assert state.last_reason
    assert await engine.run(tasks.square, 3) == 9


async def test_memory_pressure_pauses_recycles_the_largest_worker_and_resumes(
    make_engine: MakeEngine,
) -> None:
    monitor = FakeMonitor(cpu_count=2, memory_total_bytes=8 * GIB)
    config = AutoscaleConfig(cores=2, idle_shrink_after_s=None, **QUICK)  # type: ignore[arg-type]
    engine = await make_engine(workers=2, monitor=monitor, autoscale=config, sample_interval_s=0.02)
    small, large = worker_pids(engine)
    # The small one is under recycle_min_rss_bytes: a fresh worker would be no smaller.
    monitor.set(worker_rss={small: 40 * MIB, large: 2 * GIB}, memory_percent=85.0)
    await until(lambda: large not in worker_pids(engine))
    assert small in worker_pids(engine)  # only the large one went
    assert engine.stats().paused_because is not None
    monitor.set(memory_percent=60.0)
    await until(lambda: engine.stats().paused_because is None)
    state = engine.stats().autoscale
    assert state is not None
    assert state.last_decision == "resume.memory_low"
    assert await engine.run(tasks.square, 4) == 16


@pytest.fixture
def cpu_hogs() -> Iterator[Callable[[int], None]]:
    """Start processes that burn CPU outside any engine; they are killed at the end."""
    hogs: list[subprocess.Popen[bytes]] = []

    def start(count: int) -> None:
        for _ in range(count):
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))

    yield start
    for hog in hogs:
        hog.kill()
        hog.wait()


async def test_a_real_cpu_hog_outside_the_engine_shrinks_the_pool(
    make_engine: MakeEngine, cpu_hogs: Callable[[int], None]
) -> None:
    from adapters.psutil import PsutilMonitor

    cores = hybrid.usable_cpus()
    config = AutoscaleConfig(cores=cores, idle_shrink_after_s=None, **QUICK)  # type: ignore[arg-type]
    engine = await make_engine(
        workers=cores, monitor=PsutilMonitor(), autoscale=config, sample_interval_s=0.05
    )
    cpu_hogs(cores)
    await until(lambda: engine.stats().workers <= max(1, int(cores * 0.8)), timeout_s=30)
    state = engine.stats().autoscale
    assert state is not None
    assert state.decisions.get("shrink.outside_cpu", 0) >= 1
