"""When to send a heartbeat: only when nothing else has gone to the peer for an interval."""

from __future__ import annotations


class HeartbeatSchedule:
    """Heartbeat timing towards one peer, with piggybacking.

    Every message sent to the peer proves liveness as well as a heartbeat would, so a
    heartbeat is due only ``interval_s`` after the last message of any kind.

    Args:
        interval_s: the interval to keep, usually the peer's
            :meth:`~hybrid.messaging.FailureDetector.heartbeat_interval` of us.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.heartbeats_sent = 0
        self.messages_sent = 0
        self._last_sent_s: float | None = None

    def note_sent(self, now_s: float, heartbeat: bool = False) -> None:
        """Record that a message (a heartbeat if ``heartbeat``) went to the peer at ``now_s``."""
        self._last_sent_s = now_s
        self.messages_sent += 1
        self.heartbeats_sent += heartbeat

    def due_at(self) -> float:
        """Return when the next heartbeat is due (local seconds; -inf before any message)."""
        if self._last_sent_s is None:
            return float("-inf")
        return self._last_sent_s + self.interval_s

    def is_due(self, now_s: float) -> bool:
        """Return whether a heartbeat should be sent at ``now_s``."""
        return now_s >= self.due_at()
