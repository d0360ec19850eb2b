"""The resource-monitor seam: what the engine needs to know about CPU and memory pressure.

The core never imports a monitoring library. It asks a :class:`ResourceMonitor` for a
:class:`ResourceSample` (the machine, the engine's own process, each worker) and feeds
it to the autoscaling policy (:mod:`hybrid.autoscale`). ``adapters.psutil`` implements
the protocol over psutil; tests implement it by hand to drive pressure exactly. Without a
monitor the engine keeps a fixed pool.

Units: machine CPU is in percent of the CPUs sampled (100 = every one of them busy);
a process's CPU is in cores (1.0 = one core busy for the whole interval); memory in bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

logger = logging.getLogger("hybrid.resources")

DEFAULT_SAMPLE_INTERVAL_S = 0.5  # what a monitor costs at this rate: benchmarks/bench_monitor.py


@dataclass(frozen=True)
class SystemSample:
    """The machine (or the CPUs this process may use) over the last sampling interval.

    Attributes:
        cpu_count: CPUs the CPU figures cover.
        cpu_percent: busy time of those CPUs, steal included, 0-100.
        steal_percent: time a hypervisor gave those CPUs to someone else, 0-100;
            None where the platform does not report it.
        memory_total_bytes: what this process may use (a cgroup limit, else the RAM).
        memory_used_bytes: what counts against that total now.
        memory_available_bytes: what can still be allocated before the total is reached.
        swap_used_bytes / swap_total_bytes: swap in use and in all.
        load_1m / load_5m / load_15m: the run-queue averages (0.0 where unknown).
    """

    cpu_count: int
    cpu_percent: float
    steal_percent: float | None
    memory_total_bytes: int
    memory_used_bytes: int
    memory_available_bytes: int
    swap_used_bytes: int = 0
    swap_total_bytes: int = 0
    load_1m: float = 0.0
    load_5m: float = 0.0
    load_15m: float = 0.0

    @property
    def memory_percent(self) -> float:
        if self.memory_total_bytes <= 0:
            return 0.0
        return 100.0 * self.memory_used_bytes / self.memory_total_bytes

    @property
    def swap_percent(self) -> float:
        if self.swap_total_bytes <= 0:
            return 0.0
        return 100.0 * self.swap_used_bytes / self.swap_total_bytes

    @property
    def busy_cores(self) -> float:
        return self.cpu_percent * self.cpu_count / 100.0


@dataclass(frozen=True)
class ProcessSample:
    """One process over the last sampling interval.

    Attributes:
        pid: its process id.
        cpu_cores: CPU it used, in cores (1.0 = one core for the whole interval).
        rss_bytes: its resident memory now.
    """

    pid: int
    cpu_cores: float
    rss_bytes: int


@dataclass(frozen=True)
class ResourceSample:
    """One look at the machine, the engine's process and its workers.

    Attributes:
        at_s: when it was taken, on the monitor's monotonic clock.
        system: the machine.
        engine: the engine's own process (the parent, running the event loop).
        workers: the workers asked about that still exist.
        cost_s: CPU time the sample itself took in the calling thread.
    """

    at_s: float
    system: SystemSample
    engine: ProcessSample | None
    workers: tuple[ProcessSample, ...]
    cost_s: float = 0.0

    @property
    def own_cores(self) -> float:
        """CPU used by the engine: its process and every worker sampled, in cores."""
        parent = self.engine.cpu_cores if self.engine is not None else 0.0
        return parent + sum(worker.cpu_cores for worker in self.workers)

    @property
    def outside_cores(self) -> float:
        """CPU busy with anything but the engine (other tenants, steal), in cores."""
        return max(0.0, self.system.busy_cores - self.own_cores)

    @property
    def outside_percent(self) -> float:
        """:attr:`outside_cores` as a percent of the CPUs sampled."""
        return 100.0 * self.outside_cores / max(1, self.system.cpu_count)

    def worker(self, pid: int) -> ProcessSample | None:
        return next((worker for worker in self.workers if worker.pid == pid), None)


@runtime_checkable
class ResourceMonitor(Protocol):
    """Something that measures the machine and a set of processes, cheaply.

    :meth:`sample` runs on the event loop: it must not block (no sleeping, no waiting
    for an interval) and should cost well under a millisecond. CPU figures cover the
    time since the previous call; the first call may report zero CPU.
    """

    def sample(self, pids: Collection[int]) -> ResourceSample:
        """Measure the machine, this process and the live processes among ``pids``."""
        ...


MONITOR_ENTRY_POINT_GROUP = "hybrid.monitors"  # where Engine() finds its default monitor


def find_default_monitor() -> ResourceMonitor | None:
    """The monitor ``Engine()`` follows unless told otherwise; None if there is none.

    The core imports no monitoring library. It looks, in order, for:

    1. the ``hybrid.monitors`` entry points of the installed distributions (hybrid's own
       registers ``psutil = "adapters.psutil:PsutilMonitor"``), the first by name whose
       import succeeds, called with no arguments;
    2. running from a source tree without installed metadata: ``adapters.psutil``, only
       if ``adapters`` is hybrid's (its ``HYBRID_ADAPTERS`` marker), not the unrelated
       PyPI package of that name.

    Either fails quietly (None: the pool keeps its size) when psutil is not installed.
    """
    import importlib
    import importlib.metadata

    for point in sorted(
        importlib.metadata.entry_points(group=MONITOR_ENTRY_POINT_GROUP), key=lambda p: p.name
    ):
        try:
            factory = point.load()
        except ImportError:
            continue
        monitor: ResourceMonitor = factory()
        return monitor
    try:
        adapters = importlib.import_module("adapters")
        if not getattr(adapters, "HYBRID_ADAPTERS", False):
            return None
        psutil_adapter = importlib.import_module("adapters.psutil")
    except ImportError:
        return None
    found: ResourceMonitor = psutil_adapter.PsutilMonitor()
    return found


async def sample_periodically(
    monitor: ResourceMonitor,
    pids: Callable[[], Collection[int]],
    consume: Callable[[ResourceSample], None],
    interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
) -> None:
    """Sample every ``interval_s`` seconds and hand each sample to ``consume``, until
    cancelled.

    ``pids`` is asked for the current workers before each sample. An exception from the
    monitor or from ``consume`` is logged and sampling goes on: a broken monitor must not
    take the engine down with it.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, not {interval_s!r}")
    while True:
        await asyncio.sleep(interval_s)
        try:
            consume(monitor.sample(pids()))
        except Exception:
            logger.exception("resource sampling failed; trying again in %.2f s", interval_s)
