"""Who is alive: heartbeats with ``sent_time`` through Redis, judged per peer by a detector.

Each node and client writes ``[sent_time_ns, interval_s, role]`` into the cluster's beats
hash every beat, with an HMAC of those over its name as a fourth item when the cluster
has a secret; then a beat that does not verify is ignored, so nobody without the key can
keep a dead node looking alive by beating in its name. Nodes read the hash each beat and
feed every peer's :class:`hybrid.messaging.FailureDetector` one observation per new beat
(``received_at`` is when the read returned, on this node's clock). The lowest gap between
a peer's send time and our read over its recent beats estimates how far apart the two
clocks are (transit and polling only add to it): jobs' deadlines are moved by it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import deque
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


OFFSET_SAMPLES = 64  # recent beats over which a peer's clock offset is estimated


@dataclass
class Peer:
    detector: Detector
    last_sent_ns: int = -1
    role: str = "node"
    last_seen_s: float = 0.0  # our clock when its newest beat was read
    # (our clock - its clock) for its recent beats: transit and polling only add to it,
    # so the lowest is the closest estimate of the clock offset.
    deltas_s: deque[float] = field(default_factory=lambda: deque(maxlen=OFFSET_SAMPLES))

    @property
    def offset_s(self) -> float | None:
        return min(self.deltas_s) if self.deltas_s else None


@dataclass
class PeerTable:
    """Every peer seen in the beats hash, each with its own detector."""

    make_detector: Callable[[], Detector]
    peers: dict[bytes, Peer] = field(default_factory=dict)

    def update(
        self, beats: dict[bytes, Any], received_at_s: float, secret: bytes | None = None
    ) -> None:
        """Feed the detectors the beats that are new since the last read (with a secret,
        only those that verify)."""
        for name, value in beats.items():
            if not is_well_formed(value) or not verifies(name, value, secret):
                continue
            sent_ns, _interval_s, role = value[:3]
            peer = self.peers.get(name)
            if peer is None:
                peer = self.peers[name] = Peer(self.make_detector(), role=str(role))
            if sent_ns != peer.last_sent_ns:
                peer.last_sent_ns = sent_ns
                peer.last_seen_s = received_at_s
                peer.deltas_s.append(received_at_s - sent_ns / 1e9)
                peer.detector.observe(sent_ns / 1e9, received_at_s)

    def dead(self, now_s: float, role: str = "node") -> list[bytes]:
        """Peers of ``role`` the detector convicts now."""
        return [
            name
            for name, peer in self.peers.items()
            if peer.role == role and peer.detector.state(now_s) is PeerState.DEAD
        ]

    def silent(self, now_s: float, after_s: float, role: str) -> list[bytes]:
        """Peers of ``role`` whose newest beat was read more than ``after_s`` ago."""
        return [
            name
            for name, peer in self.peers.items()
            if peer.role == role and now_s - peer.last_seen_s > after_s
        ]

    def offset_s(self, name: bytes) -> float | None:
        """How far our clock runs ahead of the peer's (seconds), from its beats; None
        before its first beat. Transit and polling bias it up by at most a poll interval."""
        peer = self.peers.get(name)
        return None if peer is None else peer.offset_s

    def forget(self, name: bytes) -> None:
        self.peers.pop(name, None)


def beat_value(
    sent_ns: int, interval_s: float, role: str, secret: bytes | None = None, name: bytes = b""
) -> list[Any]:
    """A beat; signed over ``name`` (the beat's field in the hash) when there is a secret."""
    value: list[Any] = [sent_ns, interval_s, role]
    if secret is not None:
        value.append(_beat_signature(name, value, secret))
    return value


def verifies(name: bytes, value: list[Any], secret: bytes | None) -> bool:
    if secret is None:
        return True
    return len(value) == 4 and hmac.compare_digest(
        bytes(value[3]), _beat_signature(name, value[:3], secret)
    )


def _beat_signature(name: bytes, value: list[Any], secret: bytes) -> bytes:
    sent_ns, interval_s, role = value
    message = b"|".join((name, str(sent_ns).encode(), repr(float(interval_s)).encode(),
                         str(role).encode()))  # fmt: skip
    return hmac.new(secret, message, hashlib.sha256).digest()


def is_well_formed(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (3, 4)
        and isinstance(value[0], int)
        and isinstance(value[1], int | float)
        and math.isfinite(value[1])
        and isinstance(value[2], str)
        and (len(value) == 3 or isinstance(value[3], bytes))
    )
