"""Deadlines that survive the trip: a message's remaining budget accounts for its transit."""

from __future__ import annotations

from hybrid.messaging.clock import PeerClock
from hybrid.messaging.envelope import Envelope


def remaining_budget_s(envelope: Envelope, received_ns: int, clock: PeerClock) -> float | None:
    """Return how many seconds of the envelope's deadline remain at ``received_ns``.

    The deadline is in the sender's wall clock. With a known clock offset it is converted to
    ours and compared with the arrival time, so the transit is already spent. Before the
    first echo the budget at sending minus the smoothed transit (if any) is used instead.
    None when the envelope has no deadline.

    Args:
        envelope: the received message.
        received_ns: our wall clock when it arrived (``time.time_ns()``).
        clock: what we know of the sender's clock.
    """
    if envelope.deadline_ns is None:
        return None
    if clock.offset_ns is not None:
        return (clock.to_local_ns(envelope.deadline_ns) - received_ns) / 1e9
    budget_s = (envelope.deadline_ns - envelope.sent_ns) / 1e9
    return budget_s - (clock.transit.srtt_s or 0.0)


class DeadlineGate:
    """Admits work whose deadline has not passed; drops and counts the rest."""

    def __init__(self) -> None:
        self.admitted = 0
        self.expired = 0

    def admit(self, envelope: Envelope, received_ns: int, clock: PeerClock) -> bool:
        """Return whether to run the envelope's work (False: its deadline passed; counted)."""
        remaining_s = remaining_budget_s(envelope, received_ns, clock)
        if remaining_s is not None and remaining_s <= 0:
            self.expired += 1
            return False
        self.admitted += 1
        return True
