"""Who is alive: heartbeats with ``sent_time`` through Redis, judged per peer by a detector.

Each node and client writes a beat into the cluster's beats hash: ``[sent_time_ns,
interval_s, role, asks]``, where ``asks`` maps each peer it judges to the heartbeat
interval its detector wants from that peer. Every peer beats at the shortest interval it
is asked for, within the message budget (``max_beats_per_s``), so the interval follows
what each link needs instead of a fixed setting. With a cluster secret, an HMAC over the
beat and its name is appended, and a beat that does not verify is ignored: nobody without
the key can keep a dead node looking alive by beating in its name.

Readers feed every peer's :class:`hybrid.messaging.FailureDetector` one observation per
new beat (``received_at`` is when the read returned, on the reader's clock). The lowest
gap between a peer's send time and our read over its recent beats estimates how far
apart the two clocks are (transit and polling only add to it): jobs' deadlines are moved
by it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hybrid.messaging import DetectorConfig, FailureDetector, GroupPrior, PeerState


class Detector(Protocol):
    """What a node needs from a failure detector (``hybrid.messaging.FailureDetector``)."""

    def observe(self, sent_time: float, received_at: float) -> None: ...

    def state(self, now: float) -> PeerState: ...

    def heartbeat_interval(self) -> float: ...


POLL_GAPS_PER_STALL = 3.0  # a read of the beats this many intervals late is our own stall
MAX_BEATS_PER_S = 3.0  # the message budget: beats a peer sends per second at most
MAX_BEAT_INTERVAL_S = 2.0  # the longest interval a peer may be asked to beat at
OFFSET_SAMPLES = 64  # recent beats over which a peer's clock offset is estimated
MAX_ASKS = 256  # peers one beat asks intervals of, at most (the beat stays small)


def redis_detector(
    poll_interval_s: float, dead_after_s: float, prior: GroupPrior | None = None
) -> FailureDetector:
    """A detector for beats read by polling Redis every ``poll_interval_s``.

    The interval it asks of its peer ranges from the message budget's shortest (1/3 s)
    to ``MAX_BEAT_INTERVAL_S``: the detector asks for what its margins need. A new peer
    starts from what ``prior`` (its group's pooled evidence) has learned; until that has
    enough, it may be convicted after ``dead_after_s`` past its expected beat (a node
    killed a minute after it started must be noticed in about a second).
    """
    return FailureDetector(redis_detector_config(poll_interval_s, dead_after_s), prior=prior)


def redis_detector_config(poll_interval_s: float, dead_after_s: float) -> DetectorConfig:
    return DetectorConfig(
        min_interval_s=1.0 / MAX_BEATS_PER_S,
        max_interval_s=MAX_BEAT_INTERVAL_S,
        max_beats_per_s=MAX_BEATS_PER_S,
        initial_allowance_s=dead_after_s,
        max_poll_gap_s=POLL_GAPS_PER_STALL * poll_interval_s,
        stall_grace_s=2 * poll_interval_s,
    )


def group_detectors(
    poll_interval_s: float, dead_after_s: float
) -> Callable[[str], FailureDetector]:
    """A detector factory by role: peers of one role share a group prior (nodes with
    nodes, clients with clients), so a new peer starts from what its kind has shown."""
    config = redis_detector_config(poll_interval_s, dead_after_s)
    priors: dict[str, GroupPrior] = {}

    def make(role: str) -> FailureDetector:
        prior = priors.get(role)
        if prior is None:
            prior = priors[role] = GroupPrior(config.dead_memory_s, config.anomaly_memory_s)
        return FailureDetector(config, prior=prior)

    return make


@dataclass
class Peer:
    detector: Detector
    last_sent_ns: int = -1
    role: str = "node"
    last_seen_s: float = 0.0  # our clock when its newest beat was read
    asks: dict[bytes, float] = field(default_factory=dict)  # what it asks of each peer
    # (our clock - its clock) for its recent beats: transit and polling only add to it,
    # so the lowest is the closest estimate of the clock offset.
    deltas_s: deque[float] = field(default_factory=lambda: deque(maxlen=OFFSET_SAMPLES))
    last_delta_s: float = math.nan

    @property
    def offset_s(self) -> float | None:
        return min(self.deltas_s) if self.deltas_s else None


@dataclass
class PeerTable:
    """Every peer seen in the beats hash, each with its own detector."""

    make_detector: Callable[[str], Detector]  # by the peer's role
    peers: dict[bytes, Peer] = field(default_factory=dict)

    def update(
        self, beats: dict[bytes, Any], received_at_s: float, secret: bytes | None = None
    ) -> None:
        """Feed the detectors the beats that are new since the last read (with a secret,
        only those that verify)."""
        for name, value in beats.items():
            if not is_well_formed(value) or not verifies(name, value, secret):
                continue
            sent_ns, _interval_s, role, asks = value[:4]
            peer = self.peers.get(name)
            if peer is None:
                peer = self.peers[name] = Peer(self.make_detector(str(role)), role=str(role))
            if sent_ns != peer.last_sent_ns:
                peer.last_sent_ns = sent_ns
                peer.last_seen_s = received_at_s
                peer.asks = {bytes(k): float(v) for k, v in asks.items()}
                peer.last_delta_s = received_at_s - sent_ns / 1e9
                peer.deltas_s.append(peer.last_delta_s)
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

    def asks(self, roles: tuple[str, ...] = ("node", "client", "crawler")) -> dict[bytes, float]:
        """The interval our detector wants from each peer of ``roles`` (for our beat)."""
        wanted = {
            name: round(peer.detector.heartbeat_interval(), 3)
            for name, peer in self.peers.items()
            if peer.role in roles
        }
        return dict(sorted(wanted.items(), key=lambda item: item[1])[:MAX_ASKS])

    def asked_of(self, me: bytes, default_s: float) -> float:
        """The interval to beat at: the shortest any peer asks of ``me``, within the
        message budget and ``MAX_BEAT_INTERVAL_S``; ``default_s`` when nobody asks."""
        asked = [peer.asks[me] for peer in self.peers.values() if me in peer.asks]
        return negotiated_interval(min(asked, default=default_s))

    def forget(self, name: bytes) -> None:
        self.peers.pop(name, None)


def negotiated_interval(asked_s: float) -> float:
    """An asked interval kept within the budget and the longest allowed (it is untrusted)."""
    if not math.isfinite(asked_s):
        return MAX_BEAT_INTERVAL_S
    return min(MAX_BEAT_INTERVAL_S, max(1.0 / MAX_BEATS_PER_S, asked_s))


def beat_value(
    sent_ns: int,
    interval_s: float,
    role: str,
    secret: bytes | None = None,
    name: bytes = b"",
    asks: Mapping[bytes, float] | None = None,
) -> list[Any]:
    """A beat; signed over ``name`` (the beat's field in the hash) when there is a secret."""
    value: list[Any] = [sent_ns, interval_s, role, dict(asks or {})]
    if secret is not None:
        value.append(_beat_signature(name, value, secret))
    return value


def verifies(name: bytes, value: list[Any], secret: bytes | None) -> bool:
    if secret is None:
        return True
    return len(value) == 5 and hmac.compare_digest(
        bytes(value[4]), _beat_signature(name, value[:4], secret)
    )


def _beat_signature(name: bytes, value: list[Any], secret: bytes) -> bytes:
    sent_ns, interval_s, role, asks = value
    parts = [name, str(sent_ns).encode(), repr(float(interval_s)).encode(), str(role).encode()]
    parts += [bytes(peer) + b"=" + repr(float(asks[peer])).encode() for peer in sorted(asks)]
    return hmac.new(secret, b"|".join(parts), hashlib.sha256).digest()


def is_well_formed(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (4, 5)
        and isinstance(value[0], int)
        and isinstance(value[1], int | float)
        and math.isfinite(value[1])
        and isinstance(value[2], str)
        and isinstance(value[3], dict)
        and all(isinstance(k, bytes) and isinstance(v, int | float) for k, v in value[3].items())
        and (len(value) == 4 or isinstance(value[4], bytes))
    )


@dataclass(frozen=True, slots=True)
class PeerView:
    """One peer as seen from here (for metrics and ``hybrid top``). Times in seconds.

    Attributes:
        name: its field in the beats hash (``b"client:<id>"`` for a client).
        role: ``"node"``, ``"client"`` or ``"crawler"``.
        state: ``"alive"``, ``"suspect"`` or ``"dead"``.
        clock_offset_s: how far our clock runs ahead of its (lowest send-to-read gap).
        transit_s: its newest beat's send-to-read gap less that offset (transit + polling).
        asked_interval_s: the interval our detector asks it to beat at.
        asks_of_us_s: the interval it asks us to beat at, if it asks.
    """

    name: bytes
    role: str
    state: str
    clock_offset_s: float | None
    transit_s: float | None
    asked_interval_s: float
    asks_of_us_s: float | None


def peer_views(table: PeerTable, me: bytes, now_s: float) -> list[PeerView]:
    views = []
    for name, peer in sorted(table.peers.items()):
        offset_s = peer.offset_s
        transit_s = None if offset_s is None else max(0.0, peer.last_delta_s - offset_s)
        views.append(
            PeerView(
                name=name,
                role=peer.role,
                state=peer.detector.state(now_s).name.lower(),
                clock_offset_s=offset_s,
                transit_s=transit_s,
                asked_interval_s=peer.detector.heartbeat_interval(),
                asks_of_us_s=peer.asks.get(me),
            )
        )
    return views
