"""Prometheus figures for Redis scale-out: the job stream, its consumer group, nodes, clients.

Stream figures come from Redis (``XPENDING``, ``XINFO GROUPS``, ``XLEN``) in
:meth:`RedisCollector.refresh`, which the ``/metrics`` handler awaits before each scrape
(collectors are synchronous); node and client counters are read from the objects. The
``prefix`` label names the cluster (the ``--prefix`` its nodes share). Needs both extras:
``pip install 'hybrid-engine[metrics,redis]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector
from redis.exceptions import RedisError, ResponseError

from ..redis import RedisEngine, WorkerNode
from ..redis.conn import GROUP, Keys

REDELIVERY_SCAN = 1000  # pending entries inspected for delivery counts per scrape, at most
REFRESH_TIMEOUT_S = 2.0  # a scrape shows stale stream figures rather than wait longer

NODE_COUNTERS = {  # WorkerNode.counters key -> metric name (all _total counters)
    "received": ("hybrid_redis_node_jobs_received", "Jobs this node took from the stream."),
    "completed": ("hybrid_redis_node_jobs_completed", "Jobs this node finished and acked."),
    "claimed": ("hybrid_redis_redeliveries", "Entries this node took over from another."),
    "dead_lettered": ("hybrid_redis_dead_lettered", "Entries this node dead-lettered."),
    "lease_lost": ("hybrid_redis_node_leases_lost", "Running jobs whose entry was claimed."),
    "handed_back": ("hybrid_redis_node_handed_back", "Entries handed back on shutdown."),
}
CLIENT_COUNTERS = {  # RedisEngine.stats() key -> metric name
    "submitted": ("hybrid_redis_client_jobs_submitted", "Jobs this client submitted."),
    "results": ("hybrid_redis_client_results", "Results this client received."),
    "duplicate_results": ("hybrid_redis_client_duplicate_results", "Results seen twice."),
    "resubmitted": ("hybrid_redis_client_resubmitted", "Jobs resubmitted after a restart."),
}


@dataclass
class StreamFigures:
    """What Redis says about one cluster's job stream (None: not read yet, or unknown)."""

    entries: int | None = None
    pending: int | None = None
    pending_redelivered: int | None = None
    lag: int | None = None
    consumers: int | None = None
    dead_letters: int | None = None
    pending_by_consumer: dict[str, int] = field(default_factory=dict)


class RedisCollector(Collector):
    """Describes one Redis cluster (job stream, dead letters) and any local nodes or clients.

    Args:
        url: the Redis the nodes use.
        prefix: the cluster's key prefix.
        nodes: worker nodes running in this process (their counters are exported).
        clients: :class:`RedisEngine` clients in this process.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "hybrid",
        *,
        nodes: tuple[WorkerNode, ...] = (),
        clients: tuple[RedisEngine, ...] = (),
    ) -> None:
        self.prefix = prefix
        self.nodes = list(nodes)
        self.clients = list(clients)
        self.figures = StreamFigures()
        self._keys = Keys(prefix)
        self._client: aioredis.Redis = aioredis.Redis.from_url(url)

    async def refresh(self) -> None:
        """Read the stream figures from Redis; keep the last ones if Redis does not answer."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            self.figures = await asyncio.wait_for(self._read(), REFRESH_TIMEOUT_S)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _read(self) -> StreamFigures:
        jobs = self._keys.jobs
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.xlen(jobs)
            pipe.xlen(self._keys.dead)
            pipe.xinfo_groups(jobs)
            pipe.xpending(jobs, GROUP)
            pipe.xpending_range(jobs, GROUP, min="-", max="+", count=REDELIVERY_SCAN)
            replies = await pipe.execute(raise_on_error=False)
        entries, dead, groups, summary, rows = (
            None if isinstance(reply, ResponseError) else reply for reply in replies
        )
        figures = StreamFigures(entries=entries, dead_letters=dead)
        group = _our_group(groups)
        if group is not None:
            figures.consumers = group.get("consumers")
            figures.lag = group.get("lag")
        if summary is not None:
            figures.pending = summary["pending"]
            figures.pending_by_consumer = {
                _text(row["name"]): int(row["pending"]) for row in summary["consumers"] or ()
            }
        if rows is not None:
            figures.pending_redelivered = sum(row["times_delivered"] > 1 for row in rows)
        return figures

    def collect(self) -> Iterator[Metric]:
        labels = ["prefix"]
        figures = self.figures
        for name, documentation, value in (
            ("hybrid_redis_stream_entries", "Entries in the job stream.", figures.entries),
            ("hybrid_redis_pending", "Entries delivered and not yet acked.", figures.pending),
            ("hybrid_redis_pending_redelivered", "Pending entries delivered more than once "
             f"(among the first {REDELIVERY_SCAN}).", figures.pending_redelivered),
            ("hybrid_redis_group_lag", "Entries not yet delivered to any node.", figures.lag),
            ("hybrid_redis_consumers", "Nodes in the consumer group.", figures.consumers),
            ("hybrid_redis_dead_letters", "Entries in the dead-letter stream.",
             figures.dead_letters),
        ):  # fmt: skip
            family = GaugeMetricFamily(name, documentation, labels=labels)
            if value is not None:
                family.add_metric([self.prefix], value)
            yield family
        by_consumer = GaugeMetricFamily(
            "hybrid_redis_consumer_pending",
            "Entries a node holds unacked.",
            labels=["prefix", "consumer"],
        )
        for consumer, pending in figures.pending_by_consumer.items():
            by_consumer.add_metric([self.prefix, consumer], pending)
        yield by_consumer
        yield from self._node_families()
        yield from self._client_families()
        yield from self._peer_families()

    def _peer_families(self) -> Iterator[Metric]:
        """What each local node and client knows of its peers: state, clock, beats."""
        labels = ["prefix", "local", "peer", "role"]
        gauges = {
            "clock_offset_s": GaugeMetricFamily(
                "hybrid_redis_peer_clock_offset_seconds",
                "How far our clock runs ahead of the peer's, from its beats.", labels=labels,
            ),
            "transit_s": GaugeMetricFamily(
                "hybrid_redis_peer_transit_seconds",
                "The peer's newest beat: send to read, less the clock offset.", labels=labels,
            ),
            "asked_interval_s": GaugeMetricFamily(
                "hybrid_redis_peer_heartbeat_interval_seconds",
                "The interval our detector asks the peer to beat at.", labels=labels,
            ),
            "asks_of_us_s": GaugeMetricFamily(
                "hybrid_redis_peer_asks_of_us_seconds",
                "The interval the peer asks us to beat at.", labels=labels,
            ),
        }  # fmt: skip
        state = StateSetMetricFamily(
            "hybrid_redis_peer_state", "Our failure detector's verdict on the peer.",
            labels=labels,
        )  # fmt: skip
        locals_ = [(node.name.decode(), node.peers()) for node in self.nodes]
        locals_ += [(f"client:{c.client_id}", c.peers()) for c in self.clients]
        for local, views in locals_:
            for view in views:
                key = [self.prefix, local, view.name.decode(errors="replace"), view.role]
                for attribute, family in gauges.items():
                    value = getattr(view, attribute)
                    if value is not None:
                        family.add_metric(key, value)
                state.add_metric(
                    key, {name: view.state == name for name in ("alive", "suspect", "dead")}
                )
        yield from gauges.values()
        yield state

    def _node_families(self) -> Iterator[Metric]:
        labels = ["prefix", "node"]
        for key, (name, documentation) in NODE_COUNTERS.items():
            family = CounterMetricFamily(name, documentation, labels=labels)
            for node in self.nodes:
                family.add_metric([self.prefix, node.name.decode()], node.counters[key])
            yield family

    def _client_families(self) -> Iterator[Metric]:
        labels = ["prefix", "client"]
        stats = [(client.client_id, client.stats()) for client in self.clients]
        for key, (name, documentation) in CLIENT_COUNTERS.items():
            family = CounterMetricFamily(name, documentation, labels=labels)
            for client_id, counters in stats:
                family.add_metric([self.prefix, client_id], counters[key])
            yield family
        outstanding = GaugeMetricFamily(
            "hybrid_redis_client_jobs_outstanding", "Jobs awaiting a result.", labels=labels
        )
        for client_id, counters in stats:
            outstanding.add_metric([self.prefix, client_id], counters["outstanding"])
        yield outstanding


def _our_group(groups: Any) -> dict[str, Any] | None:
    for group in groups or ():
        if _text(group.get("name")) == GROUP.decode():
            return dict(group)
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
