"""Worker liveness from heartbeats: a stopped worker is found and replaced, a busy one spared."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import hybrid
from tests import tasks
from tests.conftest import MakeEngine
from tests.helpers import wait_for_full_strength, worker_pids

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py


async def test_a_stopped_worker_running_a_task_is_killed_and_its_task_fails(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(workers=2)
    stuck = asyncio.ensure_future(engine.run(tasks.sleep_and_pid, 2.0))
    neighbour = asyncio.ensure_future(engine.run(tasks.sleep_then, 1.0, "fine"))
    await asyncio.sleep(0.3)
    busy = [w.pid for w in engine.stats().per_worker if w.busy]
    assert len(busy) == 2
    victim = busy[0]
    assert victim is not None
    os.kill(victim, signal.SIGSTOP)
    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    results = await asyncio.wait_for(
        asyncio.gather(stuck, neighbour, return_exceptions=True), timeout=20
    )
    crashed = [r for r in results if isinstance(r, hybrid.WorkerCrashed)]
    assert len(crashed) == 1
    assert crashed[0].reason == "hung"
    assert crashed[0].pid == victim
    assert "stopped responding" in str(crashed[0])
    (survivor,) = [r for r in results if not isinstance(r, BaseException)]
    assert survivor == "fine" or survivor not in (victim, None)  # the other task was untouched
    assert loop.time() - stopped_at < 10
    await wait_for_full_strength(engine)
    assert victim not in worker_pids(engine)
    assert engine.stats().hung_workers_killed == 1


async def test_a_stopped_idle_worker_is_replaced(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    victim = worker_pids(engine)[0]
    os.kill(victim, signal.SIGSTOP)
    async with asyncio.timeout(20):
        while victim in worker_pids(engine) or engine.stats().workers < 2:
            await asyncio.sleep(0.02)
    assert engine.stats().hung_workers_killed == 1
    assert engine.stats().crashed == 0


async def test_a_long_call_holding_the_gil_is_not_mistaken_for_a_hang(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(workers=1)
    await asyncio.sleep(0.5)  # a few beats, so the detector knows the worker
    (pid,) = worker_pids(engine)
    total = await asyncio.wait_for(engine.run(tasks.hold_the_gil, 60_000_000), timeout=60)
    assert total == sum(range(60_000_000))
    assert worker_pids(engine) == [pid]
    stats = engine.stats()
    assert stats.hung_workers_killed == 0
    assert stats.per_worker[0].heartbeats > 0


async def test_stats_show_each_workers_heartbeats(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    await asyncio.sleep(0.5)
    for worker in engine.stats().per_worker:
        assert worker.liveness == "alive"
        assert worker.heartbeats >= 3
        assert worker.heartbeat_interval_s is not None
        assert 0.005 <= worker.heartbeat_interval_s <= 1.0


@pytest.fixture(autouse=True)
def _resume_stopped_children() -> object:
    yield
    # A failed test must not leave a stopped process behind.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "T" and int(fields[1]) == os.getpid():
                os.kill(int(pid), signal.SIGKILL)


async def test_a_worker_deadlocked_holding_the_gil_is_killed(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    await asyncio.sleep(0.5)  # a few beats, so the detector knows the worker
    (pid,) = worker_pids(engine)
    with pytest.raises(hybrid.WorkerCrashed) as caught:
        await asyncio.wait_for(engine.run(tasks.stuck_holding_the_gil, 120), timeout=30)
    assert caught.value.reason == "hung"
    assert caught.value.pid == pid
    await wait_for_full_strength(engine)
    assert await engine.run(tasks.square, 2) == 4
