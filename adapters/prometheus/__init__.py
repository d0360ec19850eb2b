"""Prometheus metrics for an engine, its tasks and its event loop (``prometheus_client``).

:class:`EngineMetrics` is a :class:`hybrid.TaskObserver`: it adds itself to the engine, so
every call through every path (``run``, ``submit``, ``map``, the web adapters, a Redis
node) is counted by function. Pool-wide figures are read from
:meth:`hybrid.Engine.stats` for each pool when Prometheus scrapes, so they cost nothing
between scrapes. The ``pool`` label names the engine's pool.

=========================================  =========  ======================================
name                                       type       labels
=========================================  =========  ======================================
hybrid_tasks_submitted_total               counter    pool, function
hybrid_tasks_total                         counter    pool, function, outcome (completed,
                                                      failed, crashed, timed_out, cancelled,
                                                      rejected); calls, not chunks
hybrid_task_queue_wait_seconds             histogram  pool, function
hybrid_task_run_seconds                    histogram  pool, function (in-worker run time)
hybrid_engine_round_trips_total            counter    pool
hybrid_tasks_queued                        gauge      pool
hybrid_workers / hybrid_workers_busy       gauge      pool
hybrid_worker_restarts_total               counter    pool
hybrid_worker_recycled_for_memory_total    counter    pool (passed max_rss_bytes)
hybrid_worker_info                         gauge      pool, worker, pid (always 1)
hybrid_worker_busy                         gauge      pool, worker
hybrid_worker_tasks_total                  counter    pool, worker
hybrid_worker_busy_seconds_total           counter    pool, worker
hybrid_worker_resident_memory_bytes        gauge      pool, worker (Linux)
hybrid_loop_lag_seconds                    gauge      (last measurement)
hybrid_loop_lag_max_seconds                gauge      (largest in the watch's window)
hybrid_loop_stalls_total                   counter    (lags past the warning threshold)
hybrid_metrics_start_time_seconds          gauge      (unix time)
=========================================  =========  ======================================

Messaging peers (:meth:`EngineMetrics.watch_peers`, labels ``endpoint, peer``):
``hybrid_peer_transit_seconds`` (gauge, by ``quantile``), ``hybrid_peer_transit_smoothed_seconds``,
``hybrid_peer_clock_offset_seconds``, ``hybrid_peer_round_trip_seconds``,
``hybrid_peer_heartbeat_interval_seconds``, ``hybrid_peer_{suspect,dead}_margin_seconds``,
``hybrid_peer_state`` (a state set: alive, suspect, dead) and the counters
``hybrid_peer_{messages,pauses,resurrections}_total``.

Redis scale-out (:meth:`EngineMetrics.watch_redis`, label ``prefix``): the gauges
``hybrid_redis_{stream_entries,pending,pending_redelivered,group_lag,consumers,dead_letters}``
and ``hybrid_redis_consumer_pending`` (by ``consumer``); per local node (label ``node``)
``hybrid_redis_redeliveries_total``, ``hybrid_redis_dead_lettered_total``,
``hybrid_redis_node_{jobs_received,jobs_completed,leases_lost,handed_back}_total``; per
local client (label ``client``) ``hybrid_redis_client_{jobs_submitted,results,...}_total``
and ``hybrid_redis_client_jobs_outstanding``.
"""

from __future__ import annotations

from .. import _identity  # noqa: F401  (first: one clear line if `adapters` is not ours)

# isort: split

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import hybrid
from hybrid.lag import LoopLagWatch
from hybrid.messaging import Endpoint

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "adapters.prometheus needs prometheus_client: pip install 'hybrid-engine[metrics]'",
        name=exc.name,
    ) from exc

from .peers import PeerCollector

if TYPE_CHECKING:
    from ..redis import RedisEngine, WorkerNode
    from .scaleout import RedisCollector

# Buckets in seconds: from a queue hop (1 ms) to work that should have a timeout (1 min).
TIME_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
CONTENT_TYPE = CONTENT_TYPE_LATEST  # media type of EngineMetrics.render()
PAGE_SIZE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class EngineMetrics:
    """One engine's metrics in a registry: it observes every task of the engine (per-call
    counters and histograms) and reads the engine's stats and the loop-lag watch at scrape
    time.

    Args:
        engine: the engine to describe; the metrics add themselves as its observer.
        registry: where to register; a fresh registry by default (pass
            ``prometheus_client.REGISTRY`` to serve them beside the process's own
            ``process_*`` and the app's metrics).
        lag_watch: the loop-lag watch whose figures to export, if any.
    """

    def __init__(
        self,
        engine: hybrid.Engine,
        *,
        registry: CollectorRegistry | None = None,
        lag_watch: LoopLagWatch | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ("pool", "function")
        self._submitted = Counter(
            "hybrid_tasks_submitted", "Calls submitted.", labels, registry=self.registry
        )
        self._outcomes = Counter(
            "hybrid_tasks",
            "Calls that ended, by how they ended.",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self._queue_wait = Histogram(
            "hybrid_task_queue_wait_seconds",
            "Time calls waited to run: in the queue, and on a worker behind another call.",
            labels,
            buckets=TIME_BUCKETS_S,
            registry=self.registry,
        )
        self._run = Histogram(
            "hybrid_task_run_seconds",
            "Time calls ran, as their worker timed them (from dispatch when it died).",
            labels,
            buckets=TIME_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine, lag_watch))
        self._peers: PeerCollector | None = None
        self._refreshes: list[Callable[[], Awaitable[None]]] = []
        engine.add_observer(self)

    def watch_peers(self, endpoint: Endpoint) -> None:
        """Export the clock, heartbeat and detector figures of ``endpoint``'s peers."""
        if self._peers is None:
            self._peers = PeerCollector()
            self.registry.register(self._peers)
        self._peers.add(endpoint)

    def watch_redis(
        self,
        url: str,
        prefix: str = "hybrid",
        *,
        nodes: tuple[WorkerNode, ...] = (),
        clients: tuple[RedisEngine, ...] = (),
    ) -> RedisCollector:
        """Export a Redis cluster's stream figures and the counters of local nodes/clients.

        Stream figures are read from Redis in :meth:`refresh`. Close the returned
        collector with ``await collector.aclose()`` (it holds a connection).
        """
        from .scaleout import RedisCollector

        collector = RedisCollector(url, prefix, nodes=nodes, clients=clients)
        self.registry.register(collector)
        self._refreshes.append(collector.refresh)
        return collector

    async def refresh(self) -> None:
        """Read the figures that need I/O (Redis); the ``/metrics`` handler awaits this."""
        if self._refreshes:
            await asyncio.gather(*(refresh() for refresh in self._refreshes))

    def task_submitted(self, event: hybrid.TaskEvent) -> None:
        self._submitted.labels(event.pool, event.function).inc(event.calls)

    def task_started(self, event: hybrid.TaskEvent) -> None:
        pass

    def task_settled(self, event: hybrid.TaskEvent) -> None:
        outcome = event.outcome or "failed"
        self._outcomes.labels(event.pool, event.function, outcome).inc(event.calls)
        if event.queue_wait_s is not None:
            self._queue_wait.labels(event.pool, event.function).observe(event.queue_wait_s)
        if event.run_s is not None:
            self._run.labels(event.pool, event.function).observe(event.run_s / event.calls)

    def render(self) -> bytes:
        """The registry in Prometheus' text format (its media type is :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _EngineCollector(Collector):
    def __init__(self, engine: hybrid.Engine, lag_watch: LoopLagWatch | None) -> None:
        self._engine = engine
        self._lag_watch = lag_watch
        self._started_at = time.time()

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "hybrid_metrics_start_time_seconds", "When metrics began.", value=self._started_at
        )
        if self._lag_watch is not None:
            yield from _lag_families(self._lag_watch)
        try:
            stats = {pool: self._engine.stats(pool) for pool in self._engine.pools}
        except hybrid.EngineClosed:
            return
        for families in zip(
            *(_pool_families(pool_stats, pool) for pool, pool_stats in stats.items()),
            strict=True,
        ):
            yield _merged(families)


def _merged(families: tuple[Metric, ...]) -> Metric:
    """One family holding the samples of the same family from every pool."""
    first = families[0]
    for other in families[1:]:
        first.samples.extend(other.samples)
    return first


def _pool_families(stats: hybrid.EngineStats, pool: str) -> list[Metric]:
    return [*_engine_families(stats, pool), *_worker_families(stats, pool)]


def _engine_families(stats: hybrid.EngineStats, pool: str) -> Iterator[Metric]:
    yield _counter("hybrid_engine_round_trips", "Batches sent to workers.", stats.round_trips, pool)
    yield _counter("hybrid_worker_restarts", "Workers replaced.", stats.worker_restarts, pool)
    yield _counter(
        "hybrid_worker_recycled_for_memory",
        "Workers replaced for passing max_rss_bytes.",
        stats.recycled_for_memory,
        pool,
    )
    yield _gauge("hybrid_tasks_queued", "Tasks waiting for a worker.", stats.queued, pool)
    yield _gauge("hybrid_workers", "Live worker processes.", stats.workers, pool)
    yield _gauge("hybrid_workers_busy", "Workers running a task.", stats.busy, pool)


def _worker_families(stats: hybrid.EngineStats, pool: str) -> Iterator[Metric]:
    labels = ["pool", "worker"]
    info = GaugeMetricFamily(
        "hybrid_worker_info", "A worker slot's process.", labels=[*labels, "pid"]
    )
    busy = GaugeMetricFamily("hybrid_worker_busy", "1 while the worker runs a task.", labels=labels)
    tasks = CounterMetricFamily("hybrid_worker_tasks", "Tasks the slot ran.", labels=labels)
    busy_s = CounterMetricFamily(
        "hybrid_worker_busy_seconds", "Time spent on tasks.", labels=labels
    )
    rss = GaugeMetricFamily(
        "hybrid_worker_resident_memory_bytes", "Resident memory of the worker.", labels=labels
    )
    for worker in stats.per_worker:
        slot = [pool, str(worker.index)]
        info.add_metric([*slot, str(worker.pid or "")], 1.0 if worker.alive else 0.0)
        busy.add_metric(slot, 1.0 if worker.busy else 0.0)
        tasks.add_metric(slot, worker.tasks)
        busy_s.add_metric(slot, worker.busy_s)
        resident = resident_bytes(worker.pid)
        if resident is not None:
            rss.add_metric(slot, resident)
    yield from (info, busy, tasks, busy_s, rss)


def _lag_families(watch: LoopLagWatch) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "hybrid_loop_lag_seconds", "Event loop lag, last measurement.", value=watch.lag_s
    )
    yield GaugeMetricFamily(
        "hybrid_loop_lag_max_seconds", "Largest lag in the watch's window.", value=watch.max_lag_s
    )
    yield CounterMetricFamily(
        "hybrid_loop_stalls", "Times the loop was blocked past the threshold.", value=watch.stalls
    )


def _gauge(name: str, documentation: str, value: float, pool: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["pool"])
    family.add_metric([pool], value)
    return family


def _counter(name: str, documentation: str, value: float, pool: str) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["pool"])
    family.add_metric([pool], value)
    return family


def resident_bytes(pid: int | None) -> int | None:
    """A process's resident memory from /proc (Linux); None where it cannot be read."""
    if pid is None:
        return None
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * PAGE_SIZE_BYTES
