"""Helpers that drive a detector through a timeline, the way a receiving loop would."""

from __future__ import annotations

import dataclasses
import random

from hybrid.messaging import DetectorConfig, FailureDetector, PeerState

POLL_S = 0.05


def steady(
    detector: FailureDetector,
    *,
    until_s: float,
    start_s: float = 0.0,
    latency_s: float = 0.05,
    jitter_s: float = 0.02,
    clock_offset_s: float = 0.0,
    drift_ppm: float = 0.0,
    seed: int = 0,
) -> list[tuple[float, PeerState]]:
    """Beat at the detector's interval from start_s to until_s; poll every POLL_S.

    Returns every state change as (local time, state).
    """
    rng = random.Random(seed)
    changes: list[tuple[float, PeerState]] = []
    next_send, now = start_s, start_s
    arrivals: list[tuple[float, float]] = []
    while now < until_s:
        while next_send <= now:
            sent = clock_offset_s + next_send * (1 + drift_ppm * 1e-6)
            arrivals.append((next_send + latency_s + rng.uniform(-jitter_s, jitter_s), sent))
            next_send += detector.heartbeat_interval()
        arrivals.sort()
        while arrivals and arrivals[0][0] <= now:
            received_at, sent = arrivals.pop(0)
            detector.observe(sent, received_at)
        before = detector.current
        if detector.state(now) is not before:
            changes.append((now, detector.current))
        now += POLL_S
    return changes


def silence(detector: FailureDetector, *, start_s: float, until_s: float) -> float | None:
    """Poll without any message; return when DEAD was reached (None if it never was)."""
    now = start_s
    while now < until_s:
        if detector.state(now) is PeerState.DEAD:
            return now
        now += POLL_S
    return None


def trusted(config: DetectorConfig | None = None) -> FailureDetector:
    """A detector with no prior allowance, as if the peer had been known for hours."""
    return FailureDetector(dataclasses.replace(config or DetectorConfig(), initial_allowance_s=0.0))
