"""Deadlines that survive the trip: a message's remaining budget accounts for its transit."""

from __future__ import annotations

from hybrid.messaging.envelope import Envelope


def remaining_budget_s(envelope: Envelope, transit_s: float | None) -> float | None:
    """Return the seconds left of the envelope's deadline when it arrived.

    The budget the sender granted (``deadline_ns - sent_ns``, both on its clock, so no
    offset enters) minus what the trip took. None when the envelope has no deadline.

    Args:
        envelope: the received message.
        transit_s: its one-way transit in seconds (see
            :meth:`~hybrid.messaging.PeerClock.add_transit`), or the smoothed estimate
            when this message's own is unknown; None deducts nothing.
    """
    if envelope.deadline_ns is None:
        return None
    return (envelope.deadline_ns - envelope.sent_ns) / 1e9 - (transit_s or 0.0)


class DeadlineGate:
    """Admits work whose deadline has not passed; drops and counts the rest."""

    def __init__(self) -> None:
        self.admitted = 0
        self.expired = 0

    def admit(self, envelope: Envelope, transit_s: float | None) -> bool:
        """Return whether to run the envelope's work (False: its deadline passed; counted)."""
        remaining_s = remaining_budget_s(envelope, transit_s)
        if remaining_s is not None and remaining_s <= 0:
            self.expired += 1
            return False
        self.admitted += 1
        return True
