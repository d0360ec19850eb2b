"""Prometheus figures for messaging peers: clock estimates, heartbeats and detector states.

Read from :class:`hybrid.messaging.Endpoint` objects when Prometheus scrapes; labels are
``endpoint`` (this side's address) and ``peer``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from hybrid.messaging import Endpoint, PeerState

TRANSIT_QUANTILES = (0.5, 0.99)
LABELS = ["endpoint", "peer"]


class PeerCollector(Collector):
    """Describes every peer of some messaging endpoints (add more with :meth:`add`)."""

    def __init__(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self._endpoints: list[Endpoint] = list(endpoints)

    def add(self, endpoint: Endpoint) -> None:
        self._endpoints.append(endpoint)

    def discard(self, endpoint: Endpoint) -> None:
        if endpoint in self._endpoints:
            self._endpoints.remove(endpoint)

    def collect(self) -> Iterator[Metric]:
        families = _Families()
        for endpoint in list(self._endpoints):
            for peer in list(endpoint.clocks):  # every peer heard from
                families.add(endpoint, peer)
        yield from families.all()


class _Families:
    def __init__(self) -> None:
        self.transit = GaugeMetricFamily(
            "hybrid_peer_transit_seconds",
            "One-way transit of the peer's recent messages, by quantile.",
            labels=[*LABELS, "quantile"],
        )
        self.smoothed = _gauge("hybrid_peer_transit_smoothed_seconds", "Smoothed transit.")
        self.offset = _gauge(
            "hybrid_peer_clock_offset_seconds", "The peer's wall clock minus ours."
        )
        self.round_trip = _gauge(
            "hybrid_peer_round_trip_seconds", "Round trip of the offset's best echo."
        )
        self.interval = _gauge(
            "hybrid_peer_heartbeat_interval_seconds", "Interval we ask the peer to beat at."
        )
        self.suspect = _gauge(
            "hybrid_peer_suspect_margin_seconds", "Lateness past which the peer is suspect."
        )
        self.dead = _gauge("hybrid_peer_dead_margin_seconds", "Lateness past which it is dead.")
        self.state = StateSetMetricFamily(
            "hybrid_peer_state", "The failure detector's verdict on the peer.", labels=LABELS
        )
        self.messages = _counter("hybrid_peer_messages", "Messages received from the peer.")
        self.pauses = _counter("hybrid_peer_pauses", "Times the peer itself paused.")
        self.resurrections = _counter(
            "hybrid_peer_resurrections", "Times a peer judged dead spoke again."
        )

    def add(self, endpoint: Endpoint, peer: str) -> None:
        labels = [endpoint.peer_id, peer]
        detector = endpoint.detector(peer)
        clock = endpoint.clocks.get(peer)
        if clock is not None:
            for quantile in TRANSIT_QUANTILES:
                transit_s = clock.transit.percentile(quantile)
                if transit_s is not None:
                    self.transit.add_metric([*labels, str(quantile)], transit_s)
            if clock.transit.srtt_s is not None:
                self.smoothed.add_metric(labels, clock.transit.srtt_s)
            if clock.offset_ns is not None:
                self.offset.add_metric(labels, clock.offset_ns / 1e9)
            if clock.delay_ns is not None:
                self.round_trip.add_metric(labels, clock.delay_ns / 1e9)
        self.interval.add_metric(labels, detector.heartbeat_interval())
        self.suspect.add_metric(labels, detector.suspect_margin_s)
        self.dead.add_metric(labels, detector.dead_margin_s)
        current = detector.current
        self.state.add_metric(labels, {state.name.lower(): state is current for state in PeerState})
        self.messages.add_metric(labels, detector.observations)
        self.pauses.add_metric(labels, detector.pauses)
        self.resurrections.add_metric(labels, detector.resurrections)

    def all(self) -> Iterator[Metric]:
        yield from vars(self).values()


def _gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=LABELS)


def _counter(name: str, documentation: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, labels=LABELS)
