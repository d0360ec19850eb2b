"""What a group of peers has shown of its network and its processes, pooled for newcomers.

A detector knows nothing about a peer it has just met, and nodes restart with every
deploy, so most peers are new. Their neighbours are not: the lateness and the pauses the
group has seen from every peer say what a new one is likely to do. A :class:`GroupPrior`
pools that evidence; every :class:`~hybrid.messaging.FailureDetector` created with
``prior=`` reads it for its DEAD margin and feeds it what it sees.

The pool keeps the same plain statistics a detector keeps for one peer (see
:class:`Evidence`), over the same memory, so a newcomer starts with the margin a peer
with the group's whole history would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hybrid.messaging._window import WindowMax, WindowMean

if TYPE_CHECKING:
    from hybrid.messaging.detector import DetectorConfig

POOLED_SCALE_WINDOW = 1000  # positive lateness samples averaged for the pooled tail scale
SCALE_REFRESH = 64  # pooled samples after which the cached margin takes the new scale


@dataclass(frozen=True, slots=True)
class Evidence:
    """Timing evidence about one peer or a pool of them. Durations in seconds.

    Attributes:
        observations: messages the evidence was drawn from.
        jitter_late_s: the worst everyday lateness (below the anomaly threshold).
        late_scale_s: the mean of positive lateness: the scale of the lateness tail.
        spike_late_s: the worst network lateness at or above the anomaly threshold.
        pause_s: the worst pause of a sender.
        anomalies: pauses and late episodes at or above the anomaly threshold.
    """

    observations: int = 0
    jitter_late_s: float = 0.0
    late_scale_s: float = 0.0
    spike_late_s: float = 0.0
    pause_s: float = 0.0
    anomalies: int = 0


def evidence_margin_s(evidence: Evidence, config: DetectorConfig) -> float:
    """Return the DEAD margin, in seconds, that ``evidence`` about a peer calls for.

    Everyday lateness counts as its worst value plus ``tail_extrapolation`` tail scales.
    Spikes and pauses are rare, so their worst values take a safety factor that starts at
    twice ``dead_factor`` and shrinks towards it as anomalies are seen.
    """
    return margin_s(
        config,
        evidence.jitter_late_s,
        evidence.late_scale_s,
        evidence.spike_late_s,
        evidence.pause_s,
        evidence.anomalies,
    )


def margin_s(
    config: DetectorConfig,
    jitter_late_s: float,
    late_scale_s: float,
    spike_late_s: float,
    pause_s: float,
    anomalies: int,
) -> float:
    """Return :func:`evidence_margin_s` of loose values (it runs on every message)."""
    weight = config.dead_factor * (1 + 1 / (1 + anomalies))
    late_s = max(jitter_late_s + config.tail_extrapolation * late_scale_s, weight * spike_late_s)
    return late_s + weight * pause_s + config.dead_floor_s


class GroupPrior:
    """Lateness and pauses pooled over every peer of a group, forgotten after a while.

    Share one instance between the detectors of peers that share a network and a kind of
    process (``FailureDetector(config, prior=group_prior)``, or :class:`PeerGroup`, which
    does it for you). Peers unlike the rest (another data centre, another runtime) belong
    in another group: a pool that mixes them widens every member's margin to the worst.

    Args:
        memory_s: how long everyday lateness counts, in seconds (the detectors'
            ``dead_memory_s``).
        anomaly_memory_s: how long spikes and pauses count, in seconds (the detectors'
            ``anomaly_memory_s``).
    """

    def __init__(self, memory_s: float, anomaly_memory_s: float) -> None:
        self.observations = 0
        self.anomalies = 0
        self._jitter = WindowMax(memory_s)
        self._scale = WindowMean(POOLED_SCALE_WINDOW)
        self._spike = WindowMax(anomaly_memory_s)
        self._pause = WindowMax(anomaly_memory_s)
        # Every detector of the group asks for the margin on every message: it is cached,
        # dropped at once when a worst value or the anomaly count moves, and otherwise
        # every SCALE_REFRESH samples (the mean of a thousand barely moves in between).
        self._cached: tuple[DetectorConfig, int, float] | None = None
        self._scale_samples = 0

    def add_late(self, late_s: float, spike: bool, now_s: float) -> None:
        """Record a positive network lateness seen at ``now_s`` (local seconds)."""
        window = self._spike if spike else self._jitter
        if late_s > window.value:
            self._cached = None
        window.add(late_s, now_s)
        if not spike:
            self._scale.add(late_s)
            self._scale_samples += 1
            if self._scale_samples % SCALE_REFRESH == 0:
                self._cached = None

    def add_pause(self, pause_s: float, now_s: float) -> None:
        """Record a pause of a sender seen at ``now_s`` (local seconds)."""
        self._pause.add(pause_s, now_s)
        self._cached = None

    def margin_s(self, config: DetectorConfig) -> float:
        """Return the DEAD margin, in seconds, the pooled evidence calls for."""
        cached = self._cached
        if cached is not None and cached[0] is config and cached[1] == self.anomalies:
            return cached[2]
        margin = margin_s(
            config,
            self._jitter.value,
            self._scale.mean,
            self._spike.value,
            self._pause.value,
            self.anomalies,
        )
        self._cached = (config, self.anomalies, margin)
        return margin

    def evidence(self) -> Evidence:
        """Return what the group has seen, as plain data."""
        return Evidence(
            self.observations,
            self._jitter.value,
            self._scale.mean,
            self._spike.value,
            self._pause.value,
            self.anomalies,
        )
