"""A :class:`hybrid.resources.ResourceMonitor` over psutil.

:meth:`PsutilMonitor.sample` reads counters the kernel already keeps (``/proc/stat``,
``/proc/meminfo``, each process's ``stat``) and never waits: CPU use is the difference
from the previous sample, so it can run on the event loop. It costs about 0.3 ms with a
few workers; at :data:`hybrid.resources.DEFAULT_SAMPLE_INTERVAL_S` that is well under 1%
of one core (``python -m benchmarks.bench_monitor`` measures it).

What it reports is what this process is really given:

* CPU over the CPUs in this process's affinity (a cpuset), not the whole host, with
  steal time (a hypervisor serving another guest) counted as busy and reported apart;
* memory against the cgroup limit when there is one (:func:`hybrid.machine.memory_truth`),
  else against the RAM.

Use (one look; the engine makes it every interval and feeds the policy)::

    import os

    from adapters.psutil import PsutilMonitor
    from hybrid.autoscale import Autoscaler, PoolLoad

    monitor, policy = PsutilMonitor(), Autoscaler()
    pids = [os.getpid()]  # the worker processes to watch
    sample = monitor.sample(pids)
    load = PoolLoad(workers=1, busy=0, queued=0, pids=pids)
    for decision in policy.decide(sample, load, now_s=sample.at_s):
        print(decision.key, decision.reason)
    system = sample.system
    print(f"CPU {system.cpu_percent:.0f}%, memory {system.memory_percent:.0f}%")
"""

from __future__ import annotations

from . import _identity  # noqa: F401  (first: one clear line if `adapters` is not ours)

# isort: split

import os
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from hybrid.machine import MemoryTruth, memory_truth, memory_used_bytes, usable_cpu_ids
from hybrid.resources import ProcessSample, ResourceSample, SystemSample

try:
    import psutil
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "adapters.psutil needs psutil: pip install 'hybrid-engine[monitor]'", name=exc.name
    ) from exc

IDLE_FIELDS = ("idle", "iowait")  # CPU time that is not busy; iowait is idle waiting on disk


class PsutilMonitor:
    """Samples the machine, this process and a set of worker processes with psutil.

    Args:
        cpu_ids: the CPUs whose use counts; None means this process's affinity.
        memory: where memory figures come from; None finds the cgroup limit, if any.
        clock: the monotonic clock stamped on samples (and used for CPU rates).
    """

    def __init__(
        self,
        *,
        cpu_ids: Sequence[int] | None = None,
        memory: MemoryTruth | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cpu_ids = sorted(cpu_ids) if cpu_ids is not None else usable_cpu_ids()
        self.memory = memory if memory is not None else memory_truth()
        self._clock = clock
        self._has_steal = hasattr(psutil.cpu_times(), "steal")
        self._last_cpu: tuple[float, float, float] | None = None  # (total, busy, steal) in s
        self._processes: dict[int, _Tracked] = {}
        self._own = _Tracked(psutil.Process(os.getpid()))

    def sample(self, pids: Collection[int]) -> ResourceSample:
        """Measure the machine, this process and the live processes among ``pids``.

        CPU figures cover the time since the previous call (zero on the first call and
        for a pid seen for the first time). Processes that ended are left out.
        """
        started_s = time.thread_time()
        now_s = self._clock()
        system = self._system()
        engine = self._own.measure(now_s)
        workers = tuple(
            worker for worker in (self._process(pid, now_s) for pid in pids) if worker is not None
        )
        self._forget(pids)
        cost_s = time.thread_time() - started_s
        return ResourceSample(now_s, system, engine, workers, cost_s)

    def _system(self) -> SystemSample:
        cpu_percent, steal_percent = self._cpu_percents()
        total, used, available = self._memory()
        swap = psutil.swap_memory()
        load_1m, load_5m, load_15m = os.getloadavg()
        return SystemSample(
            cpu_count=len(self.cpu_ids),
            cpu_percent=cpu_percent,
            steal_percent=steal_percent if self._has_steal else None,
            memory_total_bytes=total,
            memory_used_bytes=used,
            memory_available_bytes=available,
            swap_used_bytes=swap.used,
            swap_total_bytes=swap.total,
            load_1m=load_1m,
            load_5m=load_5m,
            load_15m=load_15m,
        )

    def _cpu_percents(self) -> tuple[float, float]:
        per_cpu: list[Any] = psutil.cpu_times(percpu=True)
        # /proc/stat lists online CPUs in id order; if some are offline the ids no longer
        # index the list, and the whole list is the honest fallback.
        chosen = (
            [per_cpu[cpu] for cpu in self.cpu_ids]
            if max(self.cpu_ids, default=0) < len(per_cpu)
            else per_cpu
        )
        total = busy = steal = 0.0
        for times in chosen:
            all_s = sum(times)
            # guest time is already counted in user time on Linux.
            all_s -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
            total += all_s
            busy += all_s - sum(getattr(times, name, 0.0) for name in IDLE_FIELDS)
            steal += getattr(times, "steal", 0.0)
        last, self._last_cpu = self._last_cpu, (total, busy, steal)
        if last is None or total <= last[0]:
            return 0.0, 0.0
        elapsed = total - last[0]
        return _percent(busy - last[1], elapsed), _percent(steal - last[2], elapsed)

    def _memory(self) -> tuple[int, int, int]:
        used = memory_used_bytes(self.memory)
        if used is not None:
            total = self.memory.total_bytes
            return total, used, max(0, total - used)
        virtual = psutil.virtual_memory()
        return virtual.total, virtual.total - virtual.available, virtual.available

    def _process(self, pid: int, now_s: float) -> ProcessSample | None:
        tracked = self._processes.get(pid)
        if tracked is None:
            try:
                tracked = self._processes[pid] = _Tracked(psutil.Process(pid))
            except psutil.Error:
                return None
        return tracked.measure(now_s)

    def _forget(self, pids: Collection[int]) -> None:
        for pid in [pid for pid in self._processes if pid not in pids]:
            del self._processes[pid]


class _Tracked:
    """One process and its CPU time at the previous sample."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.last: tuple[float, float] | None = None  # (clock s, CPU s)

    def measure(self, now_s: float) -> ProcessSample | None:
        try:
            with self.process.oneshot():
                times = self.process.cpu_times()
                rss_bytes = self.process.memory_info().rss
        except psutil.Error:
            return None
        cpu_s = times.user + times.system
        last, self.last = self.last, (now_s, cpu_s)
        cores = 0.0
        if last is not None and now_s > last[0]:
            cores = max(0.0, (cpu_s - last[1]) / (now_s - last[0]))
        return ProcessSample(self.process.pid, cores, rss_bytes)


def _percent(part: float, whole: float) -> float:
    return min(100.0, max(0.0, 100.0 * part / whole))
