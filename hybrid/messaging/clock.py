"""Per-peer clock offset and one-way transit, from the timestamps every message carries.

Offset and round-trip delay come from echoes, with the NTP formulas: for a message we sent
at ``t1`` (our clock), which the peer received at ``t2`` and answered at ``t3`` (its clock),
and whose answer reached us at ``t4``::

    offset = ((t2 - t1) + (t3 - t4)) / 2        delay = (t4 - t1) - (t3 - t2)

The echo carries ``t1`` and the hold time ``t3 - t2``; the reply's ``sent_ns`` is ``t3``.
The offset kept is the one of the lowest-delay sample among the last few (queueing only
ever adds delay and skews the offset), so a sliding window follows drift. A peer on the same
host (same boot id) needs none of this: its monotonic stamps are read against ours.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

OFFSET_WINDOW = 8  # echo samples kept for the min-delay filter
TRANSIT_WINDOW = 256  # transit samples kept for tail percentiles
SRTT_GAIN = 1 / 8  # RFC 6298 alpha
RTTVAR_GAIN = 1 / 4  # RFC 6298 beta


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One NTP-style sample: the peer's clock minus ours, and the round-trip delay (ns)."""

    offset_ns: float
    delay_ns: int


def estimate_offset(t1_ns: int, held_ns: int, t3_ns: int, t4_ns: int) -> ClockSample:
    """Return the NTP offset and delay for one echoed round trip (see the module docstring)."""
    t2_ns = t3_ns - held_ns
    offset_ns = ((t2_ns - t1_ns) + (t3_ns - t4_ns)) / 2
    return ClockSample(offset_ns=offset_ns, delay_ns=(t4_ns - t1_ns) - held_ns)


class TransitStats:
    """Smoothed one-way transit (RFC 6298 SRTT/RTTVAR) and tail percentiles, in seconds."""

    def __init__(self) -> None:
        self.srtt_s: float | None = None
        self.rttvar_s = 0.0
        self.samples = 0
        self._recent: deque[float] = deque(maxlen=TRANSIT_WINDOW)

    def add(self, transit_s: float) -> None:
        """Fold one measured one-way transit into the estimates."""
        self.samples += 1
        self._recent.append(transit_s)
        if self.srtt_s is None:
            self.srtt_s, self.rttvar_s = transit_s, transit_s / 2
            return
        error_s = abs(self.srtt_s - transit_s)
        self.rttvar_s += RTTVAR_GAIN * (error_s - self.rttvar_s)
        self.srtt_s += SRTT_GAIN * (transit_s - self.srtt_s)

    def percentile(self, fraction: float) -> float | None:
        """Return the ``fraction`` quantile (0..1) of the recent transits, or None if none."""
        if not self._recent:
            return None
        ordered = sorted(self._recent)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class PeerClock:
    """What this process knows about one peer's clock and the path to it.

    Args:
        same_host: the peer shares our monotonic clock (its boot id equals ours); offsets
            are then exactly zero and transits are read from monotonic stamps.
    """

    def __init__(self, same_host: bool = False) -> None:
        self.same_host = same_host
        self._samples: deque[ClockSample] = deque(maxlen=OFFSET_WINDOW)
        self._best: ClockSample | None = ClockSample(0.0, 0) if same_host else None
        self.transit = TransitStats()

    @property
    def offset_ns(self) -> float | None:
        """The peer's clock minus ours, in ns, or None before the first echo."""
        return None if self._best is None else self._best.offset_ns

    @property
    def delay_ns(self) -> int | None:
        """The round-trip delay of the sample the offset came from, in ns."""
        return None if self._best is None else self._best.delay_ns

    def add_echo(self, t1_ns: int, held_ns: int, t3_ns: int, t4_ns: int) -> ClockSample:
        """Fold in a round trip (our send ``t1``, peer hold, peer send ``t3``, our receipt)."""
        sample = estimate_offset(t1_ns, held_ns, t3_ns, t4_ns)
        if not self.same_host and sample.delay_ns >= 0:
            self._samples.append(sample)
            # Newest first: among equal delays the freshest offset wins, which follows drift.
            self._best = min(reversed(self._samples), key=lambda kept: kept.delay_ns)
        return sample

    def add_transit(self, sent_ns: int, received_ns: int) -> float | None:
        """Record a message's one-way transit and return it in seconds (None: no offset yet).

        ``sent_ns`` and ``received_ns`` are wall clocks, or monotonic clocks for a
        same-host peer.
        """
        if self._best is None:
            return None
        transit_s = (received_ns - sent_ns + self._best.offset_ns) / 1e9
        self.transit.add(transit_s)
        return transit_s

    def to_local_ns(self, peer_ns: int) -> float:
        """Convert a time on the peer's clock to ours (identity before the first echo)."""
        return peer_ns - (self.offset_ns or 0.0)
