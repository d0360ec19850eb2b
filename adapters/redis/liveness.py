"""Who is alive: heartbeats with ``sent_time`` through Redis, judged per peer by a detector.

Each node and client writes ``[sent_time_ns, interval_s, role]`` into the cluster's beats
hash every beat. Nodes read the hash each beat and feed every peer's
:class:`hybrid.messaging.FailureDetector` one observation per new beat (``received_at`` is
when the read returned, on this node's clock, so clock offsets between hosts cancel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hybrid.messaging import DetectorConfig, FailureDetector, PeerState


class Detector(Protocol):
    """What a node needs from a failure detector (``hybrid.messaging.FailureDetector``)."""

    def observe(self, sent_time: float, received_at: float) -> None: ...

    def state(self, now: float) -> PeerState: ...

    def heartbeat_interval(self) -> float: ...


POLL_GAPS_PER_STALL = 3.0  # a read of the beats this many intervals late is our own stall


def redis_detector(beat_interval_s: float, dead_after_s: float) -> FailureDetector:
    """A detector tuned for beats read by polling Redis every ``beat_interval_s``.

    A new peer may be convicted after ``dead_after_s`` past its expected beat (the
    default detector starts at 3 s and earns speed over half an hour of acquaintance;
    here a node killed a minute after it started must be noticed in about a second).
    """
    return FailureDetector(
        DetectorConfig(
            min_interval_s=beat_interval_s,
            max_interval_s=beat_interval_s,
            max_beats_per_s=1.0 / beat_interval_s,
            initial_allowance_s=dead_after_s,
            max_poll_gap_s=POLL_GAPS_PER_STALL * beat_interval_s,
            stall_grace_s=2 * beat_interval_s,
        )
    )


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
        for name, value in beats.items():
            if not is_well_formed(value):
                continue
            sent_ns, _interval_s, role = value
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
            if peer.role == role and peer.detector.state(now_s) is PeerState.DEAD
        ]

    def forget(self, name: bytes) -> None:
        self.peers.pop(name, None)


def beat_value(sent_ns: int, interval_s: float, role: str) -> list[Any]:
    return [sent_ns, interval_s, role]


def is_well_formed(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], int)
        and isinstance(value[1], int | float)
        and math.isfinite(value[1])
    )
