"""Failure detectors for a set of peers, with the check only a set can make.

When most peers turn late in the same poll, the likelier story is that this process (its
loop, its reader, its network interface) fell behind, not that they all died together.
The group then holds escalation for ``mass_hold_s``; if none of them is heard from in that
time, the rule is spent and they are judged one by one as usual.

The group also pools what its peers have shown (:class:`~hybrid.messaging.GroupPrior`), so a
peer met a moment ago is judged with the margins its neighbours earned, not a blank
allowance. Code that keeps its own table of detectors gets the same by creating them with
``FailureDetector(group.config, prior=group.prior)``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from hybrid.messaging.detector import DetectorConfig, FailureDetector, PeerState
from hybrid.messaging.prior import GroupPrior

PeerId = TypeVar("PeerId", bound=Hashable)


class PeerGroup(Generic[PeerId]):
    """One :class:`FailureDetector` per peer, created on first sight.

    Args:
        config: the configuration every detector gets.
        mass_fraction: the share of peers escalating in one poll that means a local stall.
        min_peers: below this many peers the mass rule does not apply.
        mass_hold_s: how long escalation is held when the mass rule fires, in seconds.

    Attributes:
        prior: the evidence pooled over every peer the group's detectors have judged,
            removed ones included; each new detector starts from it.
    """

    def __init__(
        self,
        config: DetectorConfig | None = None,
        mass_fraction: float = 0.5,
        min_peers: int = 3,
        mass_hold_s: float = 1.0,
    ) -> None:
        self.config = config or DetectorConfig()
        self.mass_fraction = mass_fraction
        self.min_peers = min_peers
        self.mass_hold_s = mass_hold_s
        self.mass_stalls = 0
        self.prior = GroupPrior(self.config.dead_memory_s, self.config.anomaly_memory_s)
        self._detectors: dict[PeerId, FailureDetector] = {}
        self._rule_armed = True

    def detector(self, peer: PeerId) -> FailureDetector:
        """Return the peer's detector, creating it on first use with the group's prior."""
        found = self._detectors.get(peer)
        if found is None:
            found = self._detectors[peer] = FailureDetector(self.config, prior=self.prior)
        return found

    def remove(self, peer: PeerId) -> None:
        """Forget a peer (it left or was replaced); what it showed stays in the prior."""
        self._detectors.pop(peer, None)

    def observe(self, peer: PeerId, sent_time: float, received_at: float) -> None:
        """Account for one message from ``peer`` (see :meth:`FailureDetector.observe`)."""
        self.detector(peer).observe(sent_time, received_at)
        self._rule_armed = True

    def states(self, now: float) -> dict[PeerId, PeerState]:
        """Poll every peer at ``now`` and return their states."""
        detectors = self._detectors
        if self._rule_armed and len(detectors) >= self.min_peers:
            rising = sum(d.evaluate(now) > d.current for d in detectors.values())
            if rising >= self.mass_fraction * len(detectors):
                self.mass_stalls += 1
                self._rule_armed = False
                for held in detectors.values():
                    held.hold(now + self.mass_hold_s)
        return {peer: d.state(now) for peer, d in detectors.items()}
