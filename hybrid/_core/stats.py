"""Typed snapshots of what an engine is doing, and the counters behind them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..autoscale import AutoscaleState
    from .slot import Slot

DURATION_SAMPLES = 8192  # recent task run times kept for percentiles


@dataclass(frozen=True)
class WorkerStats:
    """One worker slot: its current process and what it has done since the engine started."""

    index: int
    pid: int | None
    alive: bool
    busy: bool
    tasks: int
    busy_s: float
    starts: int
    liveness: str  # alive, suspect or hung, from the worker's heartbeats
    heartbeat_interval_s: float | None  # the interval its detector asks it to beat at
    heartbeats: int  # beats seen from its current process


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of an engine.

    Counts are of calls (a chunk of ``map`` counts once per call), except ``round_trips``
    (batches sent to workers) and ``worker_restarts`` (replacements begun: after a crash,
    a timeout, a cancellation or ``max_tasks_per_child``). ``workers`` counts live workers;
    task times are measured inside the workers, in seconds.
    """

    workers: int
    busy: int
    queued: int
    submitted: int
    completed: int
    failed: int
    crashed: int
    timed_out: int
    cancelled: int
    worker_restarts: int
    round_trips: int
    recycled_for_memory: int
    hung_workers_killed: int
    task_p50_s: float | None
    task_p95_s: float | None
    task_p99_s: float | None
    per_worker: tuple[WorkerStats, ...]
    paused_because: str | None = None  # why intake is paused (memory pressure), if it is
    usable_cpus: int = 0  # CPUs this process may really use (affinity, cgroup quota)
    memory_limit_bytes: int = 0  # the memory it may use (cgroup limit, else physical)
    autoscale: AutoscaleState | None = None  # the policy's view, with a monitor

    @property
    def hottest_worker(self) -> WorkerStats | None:
        """The worker that has spent the most time running tasks."""
        return max(self.per_worker, key=lambda worker: worker.busy_s, default=None)


@dataclass
class Counters:
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    crashed: int = 0
    timed_out: int = 0
    cancelled: int = 0
    worker_restarts: int = 0
    recycled_for_memory: int = 0  # workers replaced for passing max_rss_bytes
    hung: int = 0  # workers killed for not responding
    round_trips: int = 0  # batches sent to workers; fewer than tasks when tiny tasks share trips
    durations_s: deque[float] = field(default_factory=lambda: deque(maxlen=DURATION_SAMPLES))


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def pool_stats(
    slots: list[Slot], counters: Counters, queued: int, paused_because: str | None
) -> EngineStats:
    """A snapshot of one pool."""
    durations = sorted(counters.durations_s)
    workers = tuple(
        WorkerStats(
            index=slot.index,
            pid=slot.pid,
            alive=slot.alive,
            busy=bool(slot.in_flight),
            tasks=slot.tasks_done,
            busy_s=slot.busy_s,
            starts=slot.starts,
            liveness=slot.liveness.state if slot.liveness else "alive",
            heartbeat_interval_s=(
                slot.liveness.detector.heartbeat_interval() if slot.liveness else None
            ),
            heartbeats=slot.liveness.beats_seen if slot.liveness else 0,
        )
        for slot in slots
    )
    return EngineStats(
        workers=sum(1 for slot in slots if slot.alive),
        busy=sum(1 for slot in slots if slot.in_flight),
        queued=queued,
        submitted=counters.submitted,
        completed=counters.completed,
        failed=counters.failed,
        crashed=counters.crashed,
        timed_out=counters.timed_out,
        cancelled=counters.cancelled,
        worker_restarts=counters.worker_restarts,
        round_trips=counters.round_trips,
        recycled_for_memory=counters.recycled_for_memory,
        hung_workers_killed=counters.hung,
        task_p50_s=percentile(durations, 0.50),
        task_p95_s=percentile(durations, 0.95),
        task_p99_s=percentile(durations, 0.99),
        per_worker=workers,
        paused_because=paused_because,
    )
