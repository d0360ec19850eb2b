"""Who is alive: heartbeats with ``sent_time`` through Redis, judged per peer by a detector.

Each node and client writes ``[sent_time_ns, interval_s, role]`` into the cluster's beats
hash every beat. Nodes read the hash each beat and feed every peer's detector one
observation per new beat. The detector is anything with the shape of
``hybrid.messaging.FailureDetector`` (``observe``, ``state``, ``heartbeat_interval``);
:class:`ArrivalDetector` is a small stand-in with that shape.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class PeerState(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"


class Detector(Protocol):
    """What a node needs from a failure detector (the shape of issue 3's)."""

    def observe(self, sent_time: float, received_at: float) -> None: ...

    def state(self, now: float) -> Any: ...

    def heartbeat_interval(self) -> float: ...


def is_dead(state: Any) -> bool:
    """True for this module's DEAD and for any detector state named DEAD."""
    return str(getattr(state, "name", state)).upper() == "DEAD"


MIN_DEAD_AFTER_S = 0.6  # never convict sooner, whatever the measured jitter
DEVIATIONS_TO_DEAD = 8.0  # arrivals later than mean + 8 deviations are not jitter
STALL_FACTOR = 3.0  # a gap between state() calls this many intervals long is our own stall


class ArrivalDetector:
    """Silence measured against the peer's own arrival pattern (local clock only).

    Arrival times are taken on the receiver's clock, so a peer's clock offset or drift
    cannot matter. The peer is DEAD once silent for longer than its mean inter-arrival
    time plus ``DEVIATIONS_TO_DEAD`` mean deviations (at least ``dead_after_s``), SUSPECT
    past half of that. If ``state`` itself was not called for a long while, the local
    loop stalled: that time is not held against the peer.
    """

    def __init__(self, interval_s: float, dead_after_s: float) -> None:
        self._interval_s = interval_s
        self._dead_after_s = max(dead_after_s, MIN_DEAD_AFTER_S)
        self._last_arrival: float | None = None
        self._mean_gap_s = interval_s
        self._deviation_s = interval_s / 4
        self._last_check: float | None = None

    def observe(self, sent_time: float, received_at: float) -> None:
        if self._last_arrival is not None:
            gap_s = received_at - self._last_arrival
            error_s = gap_s - self._mean_gap_s
            self._mean_gap_s += error_s / 8
            self._deviation_s += (abs(error_s) - self._deviation_s) / 4
        self._last_arrival = received_at

    def state(self, now: float) -> PeerState:
        if self._last_check is not None and self._last_arrival is not None:
            stalled_s = now - self._last_check - STALL_FACTOR * self._interval_s
            if stalled_s > 0:
                self._last_arrival += stalled_s
        self._last_check = now
        if self._last_arrival is None:
            return PeerState.ALIVE
        silent_s = now - self._last_arrival
        limit_s = max(self._dead_after_s, self._mean_gap_s + DEVIATIONS_TO_DEAD * self._deviation_s)
        if silent_s > limit_s:
            return PeerState.DEAD
        if silent_s > limit_s / 2:
            return PeerState.SUSPECT
        return PeerState.ALIVE

    def heartbeat_interval(self) -> float:
        return self._interval_s


@dataclass
class Peer:
    detector: Detector
    last_sent_ns: int = -1
    role: str = "node"


@dataclass
class PeerTable:
    """Every peer seen in the beats hash, each with its own detector."""

    make_detector: Callable[[], Detector]
    peers: dict[bytes, Peer] = field(default_factory=dict)

    def update(self, beats: dict[bytes, Any], received_at_s: float) -> None:
        """Feed the detectors the beats that are new since the last read."""
        for name, (sent_ns, _interval_s, role) in beats.items():
            peer = self.peers.get(name)
            if peer is None:
                peer = self.peers[name] = Peer(self.make_detector(), role=str(role))
            if sent_ns != peer.last_sent_ns:
                peer.last_sent_ns = sent_ns
                peer.detector.observe(sent_ns / 1e9, received_at_s)

    def dead(self, now_s: float, role: str = "node") -> list[bytes]:
        """Peers of ``role`` the detector convicts now."""
        return [
            name
            for name, peer in self.peers.items()
            if peer.role == role and is_dead(peer.detector.state(now_s))
        ]

    def forget(self, name: bytes) -> None:
        self.peers.pop(name, None)


def beat_value(sent_ns: int, interval_s: float, role: str) -> list[Any]:
    return [sent_ns, interval_s, role]


def is_finite_beat(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], int)
        and isinstance(value[1], int | float)
        and math.isfinite(value[1])
    )
