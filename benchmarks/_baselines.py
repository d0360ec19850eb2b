"""The detectors people run today, as the benchmark's baselines, same interface as ours."""

from __future__ import annotations

import math

from hybrid.messaging import PeerState


class CeleryRule:
    """Celery's worker liveness: 2 s heartbeats, offline 4 s after the last one arrived."""

    BEAT_S = 2.0
    EXPIRE_S = 4.0  # freq * expire_window / 100 with Celery's defaults (2 s, 200)

    def __init__(self) -> None:
        self._last_received: float | None = None
        self._state = PeerState.ALIVE

    def heartbeat_interval(self) -> float:
        return self.BEAT_S

    def observe(self, sent_time: float, received_at: float) -> None:
        self._last_received = max(self._last_received or received_at, received_at)
        self._state = PeerState.ALIVE

    def earliest_change_at(self) -> float:
        if self._last_received is None:
            return float("inf")
        return self._last_received + self.EXPIRE_S

    def state(self, now: float) -> PeerState:
        if self._last_received is not None and now >= self._last_received + self.EXPIRE_S:
            self._state = PeerState.DEAD
        return self._state


class PhiAccrual:
    """Akka's phi accrual detector with its defaults (akka.remote / akka.cluster)."""

    BEAT_S = 1.0  # heartbeat-interval
    THRESHOLD = 8.0  # threshold
    MAX_SAMPLES = 1000  # max-sample-size
    MIN_STD_S = 0.1  # min-std-deviation
    ACCEPTABLE_PAUSE_S = 3.0  # acceptable-heartbeat-pause
    FIRST_ESTIMATE_S = 1.0  # expected-response-after / first heartbeat estimate

    def __init__(self) -> None:
        first, std = self.FIRST_ESTIMATE_S, self.FIRST_ESTIMATE_S / 4
        self._intervals = [first - std, first + std]
        self._next = 0
        self._sum = sum(self._intervals)
        self._squares = sum(i * i for i in self._intervals)
        self._last_received: float | None = None
        self._state = PeerState.ALIVE

    def heartbeat_interval(self) -> float:
        return self.BEAT_S

    def observe(self, sent_time: float, received_at: float) -> None:
        # Akka records an interval only while the peer is still deemed available.
        if self._last_received is not None and self.phi(received_at) < self.THRESHOLD:
            self._add(received_at - self._last_received)
        self._last_received = received_at
        self._state = PeerState.ALIVE

    def _add(self, interval_s: float) -> None:
        if len(self._intervals) < self.MAX_SAMPLES:
            self._intervals.append(interval_s)
        else:
            old = self._intervals[self._next]
            self._intervals[self._next] = interval_s
            self._next = (self._next + 1) % self.MAX_SAMPLES
            self._sum -= old
            self._squares -= old * old
        self._sum += interval_s
        self._squares += interval_s * interval_s

    def phi(self, now: float) -> float:
        assert self._last_received is not None
        count = len(self._intervals)
        mean = self._sum / count
        variance = max(0.0, self._squares / count - mean * mean)
        std = max(math.sqrt(variance), self.MIN_STD_S)
        mean += self.ACCEPTABLE_PAUSE_S
        y = (now - self._last_received - mean) / std
        exponent = -y * (1.5976 + 0.070566 * y * y)
        if exponent > 700.0:  # exp overflows to infinity on the JVM: phi is 0 there
            return 0.0
        e = math.exp(exponent)
        if now - self._last_received > mean:
            return -math.log10(e / (1.0 + e))
        return -math.log10(1.0 - 1.0 / (1.0 + e))

    def earliest_change_at(self) -> float:
        # phi stays below log10(2) < THRESHOLD until the mean plus the pause has passed.
        if self._last_received is None:
            return float("inf")
        return self._last_received + self._sum / len(self._intervals) + self.ACCEPTABLE_PAUSE_S

    def state(self, now: float) -> PeerState:
        if self._last_received is not None and self.phi(now) >= self.THRESHOLD:
            self._state = PeerState.DEAD
        return self._state
