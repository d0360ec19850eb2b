"""The psutil monitor against real processes: a memory hog's RSS shows, a CPU hog outside
the pool shows as outside CPU, steal is reported where the platform has it, memory is
read against a cgroup limit when there is one, sampling runs on the loop, and the policy
acts on real readings."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import psutil
import pytest

from adapters.psutil import PsutilMonitor
from hybrid.autoscale import Action, AutoscaleConfig, Autoscaler, Cause, PoolLoad
from hybrid.machine import MemoryTruth
from hybrid.resources import ResourceMonitor, ResourceSample, sample_periodically

MIB = 1 << 20
HOG_MEMORY_MB = 200

Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start helper processes from tests.resources.children; kill and reap them at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.resources.children", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.communicate(timeout=30)


def test_the_monitor_implements_the_core_protocol() -> None:
    assert isinstance(PsutilMonitor(), ResourceMonitor)


def test_a_memory_hogs_rss_reading_rises(spawn: Spawn) -> None:
    hog = spawn("hog_memory", str(HOG_MEMORY_MB))
    monitor = PsutilMonitor()
    before = monitor.sample([hog.pid]).worker(hog.pid)
    assert before is not None
    assert before.rss_bytes < 100 * MIB
    assert hog.stdin is not None
    assert hog.stdout is not None
    hog.stdin.write("go\n")
    hog.stdin.flush()
    assert hog.stdout.readline().strip() == "ready"
    after = monitor.sample([hog.pid]).worker(hog.pid)
    assert after is not None
    assert after.rss_bytes - before.rss_bytes >= (HOG_MEMORY_MB - 10) * MIB


@pytest.mark.alone  # the hog must get a fair part of a core; parallel tests took all but 0.1
def test_a_cpu_hog_outside_the_pool_counts_as_outside_cpu(spawn: Spawn) -> None:
    hog = spawn("hog_cpu")
    blind = PsutilMonitor()  # the hog is not one of its workers: it is someone else
    seeing = PsutilMonitor()  # the hog is one of its workers
    blind.sample([])
    seeing.sample([hog.pid])
    time.sleep(1.0)
    outside = blind.sample([])
    ours = seeing.sample([hog.pid])
    hog_sample = ours.worker(hog.pid)
    assert hog_sample is not None
    # It spins, but on a crowded 2-core host it may get well under a core: the figures
    # are compared with what it did get (/proc/stat counts in 10 ms ticks: some slack).
    hog_cores = hog_sample.cpu_cores
    assert hog_cores >= 0.2
    slack_cores = 0.05 + 0.2 * hog_cores
    assert outside.system.busy_cores >= hog_cores - slack_cores
    assert outside.outside_cores >= hog_cores - slack_cores
    # Counted as a worker, the same hog is no longer outside pressure.
    assert ours.outside_cores <= outside.outside_cores - hog_cores + slack_cores


def test_steal_is_reported_where_the_platform_has_it() -> None:
    monitor = PsutilMonitor()
    monitor.sample([])
    time.sleep(0.2)
    system = monitor.sample([]).system
    if hasattr(psutil.cpu_times(), "steal"):
        assert system.steal_percent is not None
        assert 0.0 <= system.steal_percent <= system.cpu_percent <= 100.0
    else:
        assert system.steal_percent is None


def test_cpu_is_measured_over_the_cpus_this_process_may_use() -> None:
    monitor = PsutilMonitor()
    assert monitor.sample([]).system.cpu_count == len(psutil.Process().cpu_affinity())
    assert PsutilMonitor(cpu_ids=[0]).sample([]).system.cpu_count == 1


def test_a_process_that_ended_is_left_out(spawn: Spawn) -> None:
    gone = spawn("hog_memory", "1")
    gone.kill()
    gone.wait(timeout=30)
    monitor = PsutilMonitor()
    sample = monitor.sample([gone.pid, 1_999_999_999])
    assert sample.workers == ()
    assert sample.engine is not None
    assert sample.engine.rss_bytes > 0


def test_memory_is_read_against_a_cgroup_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.current").write_text(f"{700 * MIB}\n")
    (tmp_path / "memory.stat").write_text(f"inactive_file {100 * MIB}\n")
    truth = MemoryTruth(1024 * MIB, 64 * 1024 * MIB, cgroup_folder=tmp_path, cgroup_version=2)
    system = PsutilMonitor(memory=truth).sample([]).system
    assert system.memory_total_bytes == 1024 * MIB
    assert system.memory_used_bytes == 600 * MIB
    assert system.memory_available_bytes == 424 * MIB
    assert system.memory_percent == pytest.approx(600 / 1024 * 100)


def test_memory_without_a_cgroup_limit_is_the_machines() -> None:
    system = PsutilMonitor(memory=MemoryTruth(1, 1)).sample([]).system
    virtual = psutil.virtual_memory()
    assert system.memory_total_bytes == virtual.total
    assert 0.0 < system.memory_percent < 100.0
    assert system.swap_total_bytes == psutil.swap_memory().total


def test_each_sample_reports_its_own_cost() -> None:
    sample = PsutilMonitor().sample([])
    assert 0.0 < sample.cost_s < 1.0


async def test_sampling_on_the_loop_hands_every_sample_over(spawn: Spawn) -> None:
    hog = spawn("hog_memory", "1")
    samples: list[ResourceSample] = []
    sampler = asyncio.ensure_future(
        sample_periodically(PsutilMonitor(), lambda: [hog.pid], samples.append, interval_s=0.02)
    )
    async with asyncio.timeout(20):
        while len(samples) < 3:
            await asyncio.sleep(0.01)
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    assert all(sample.worker(hog.pid) is not None for sample in samples)
    assert [sample.at_s for sample in samples] == sorted(sample.at_s for sample in samples)


class BrokenMonitor:
    def __init__(self) -> None:
        self.calls = 0

    def sample(self, pids: Collection[int]) -> ResourceSample:
        self.calls += 1
        raise RuntimeError(f"broken sample {self.calls}")


async def test_a_failing_monitor_is_logged_and_sampling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = BrokenMonitor()
    with caplog.at_level(logging.ERROR, logger="hybrid.resources"):
        sampler = asyncio.ensure_future(
            sample_periodically(monitor, list, lambda _: None, interval_s=0.01)
        )
        async with asyncio.timeout(20):
            while monitor.calls < 3:
                await asyncio.sleep(0.01)
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    assert "resource sampling failed" in caplog.text
    assert "broken sample 1" in caplog.text


async def test_a_sampling_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        await sample_periodically(PsutilMonitor(), list, lambda _: None, interval_s=0)


def grown_hog(spawn: Spawn, megabytes: int) -> subprocess.Popen[str]:
    hog = spawn("hog_memory", str(megabytes))
    assert hog.stdin is not None
    assert hog.stdout is not None
    hog.stdin.write("go\n")
    hog.stdin.flush()
    assert hog.stdout.readline().strip() == "ready"
    return hog


def test_the_policy_on_real_readings_recycles_the_real_leaker(spawn: Spawn) -> None:
    small = spawn("hog_memory", "1")  # waits on stdin without allocating: a lean worker
    leaker = grown_hog(spawn, HOG_MEMORY_MB)
    pids = (small.pid, leaker.pid)
    policy = Autoscaler(AutoscaleConfig(cores=2, max_rss_bytes=100 * MIB))
    sample = PsutilMonitor().sample(pids)
    decisions = policy.decide(sample, PoolLoad(2, 2, 0, pids), now_s=sample.at_s)
    assert [(d.action, d.cause, d.pid) for d in decisions] == [
        (Action.RECYCLE, Cause.WORKER_RSS, leaker.pid)
    ]


def test_the_policy_on_real_readings_recycles_the_largest_worker_first(
    spawn: Spawn, tmp_path: Path
) -> None:
    workers = [grown_hog(spawn, megabytes) for megabytes in (80, 240, 160)]
    pids = tuple(worker.pid for worker in workers)
    # The pressure is set by hand through a cgroup file; the sizes are the real ones.
    (tmp_path / "memory.current").write_text(f"{870 * MIB}\n")
    truth = MemoryTruth(1000 * MIB, 64 * 1024 * MIB, cgroup_folder=tmp_path, cgroup_version=2)
    monitor = PsutilMonitor(memory=truth)
    policy = Autoscaler(AutoscaleConfig(cores=2))
    sample = monitor.sample(pids)
    pause, recycle = policy.decide(sample, PoolLoad(3, 3, 10, pids), now_s=sample.at_s)
    assert (pause.action, recycle.action, recycle.pid) == (Action.PAUSE, Action.RECYCLE, pids[1])
    sample = monitor.sample(pids)
    later = policy.decide(sample, PoolLoad(3, 3, 10, pids), now_s=sample.at_s + 1.0)
    assert [(d.action, d.pid) for d in later] == [(Action.RECYCLE, pids[2])]
