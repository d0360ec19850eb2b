"""Latency-compensated messaging: timed envelopes, clock and transit estimates, adaptive
heartbeats, and a failure detector that neither misses the dead nor accuses the slow.

Standard library only. The pieces work alone (a :class:`FailureDetector` can replay a
recorded trace) or together in an :class:`Endpoint` over any :class:`Transport`.
"""

from hybrid.messaging.clock import ClockSample, PeerClock, TransitStats, estimate_offset
from hybrid.messaging.codec import Codec
from hybrid.messaging.deadline import DeadlineGate, remaining_budget_s
from hybrid.messaging.detector import DetectorConfig, FailureDetector, PeerState, StateChange
from hybrid.messaging.endpoint import Endpoint
from hybrid.messaging.envelope import Echo, Envelope, new_id
from hybrid.messaging.faulty import FaultPlan, FaultyTransport, SkewedClock
from hybrid.messaging.group import PeerGroup
from hybrid.messaging.heartbeat import HeartbeatSchedule
from hybrid.messaging.prior import Evidence, GroupPrior
from hybrid.messaging.transport import InMemoryNetwork, InMemoryTransport, Transport

from .._errors import RejectedMessage, TransportClosed, UnknownPeer

__all__ = [
    "ClockSample",
    "Codec",
    "DeadlineGate",
    "DetectorConfig",
    "Echo",
    "Endpoint",
    "Envelope",
    "Evidence",
    "FailureDetector",
    "FaultPlan",
    "FaultyTransport",
    "GroupPrior",
    "HeartbeatSchedule",
    "InMemoryNetwork",
    "InMemoryTransport",
    "PeerClock",
    "PeerGroup",
    "PeerState",
    "RejectedMessage",
    "SkewedClock",
    "StateChange",
    "TransitStats",
    "Transport",
    "TransportClosed",
    "UnknownPeer",
    "estimate_offset",
    "new_id",
    "remaining_budget_s",
]
