"""Per-peer failure detection from message timing: ALIVE, SUSPECT, DEAD.

The expected arrival of the peer's next message follows Chen, Toueg and Aguilera (2002):
the peer's last ``sent_time`` plus the interval it beats at plus the mean of recent
``received_at - sent_time``. That mean contains the clock offset, so the offset cancels and
a peer whose clock is seconds off (or drifting) is judged exactly like a synchronised one.

How late past that expectation is too late comes from the peer's measured behaviour, not
a normal fit (phi accrual's weak point with heavy tails): two margins over windows of
lateness, plus a floor.

* SUSPECT margin: a factor times the worst network lateness over the last minute.
* DEAD margin (:func:`~hybrid.messaging.prior.evidence_margin_s`): over the last hours,
  the worst everyday lateness extended by a few times the scale of its tail (everyday
  lateness is sampled thousands of times, so its tail is measured, not guessed), or the
  worst delay spike widened by a factor that shrinks as more spikes are seen (they are
  rare, and the next may be larger); plus the sender's worst pause, widened the same way.
* The DEAD margin never goes below a prior. With a :class:`~hybrid.messaging.GroupPrior`
  that has seen ``prior_min_observations`` messages, the prior is the margin the group's
  pooled evidence calls for, so a peer met a second ago is judged like its neighbours.
  Without one, it is ``initial_allowance_s``, halving every ``trust_half_life_s`` of
  acquaintance (four times slower once the peer has shown a pause or a spike): a peer
  earns fast conviction by beating steadily.

Each arrival is split in two: a ``sent_time`` later than the peer's interval allows means
the *sender* paused (its process stalled; it did come back); a ``received_at - sent_time``
above the mean means the *network* was slow. The two are remembered separately.

The local loop's own stalls convict no one: a gap between ``state()`` calls longer than
``max_poll_gap_s`` means this process did not run, so escalation is held for
``stall_grace_s`` while the queued messages are read, and arrivals read in that grace are
not taken as evidence of a slow network. :class:`~hybrid.messaging.group.PeerGroup` adds
the other symptom: every peer late at once.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from hybrid.messaging._window import WindowMax, WindowMean
from hybrid.messaging.prior import Evidence, GroupPrior, margin_s

PAUSE_FRACTION = 0.5  # a send later than the interval by this fraction of it is a pause


class PeerState(enum.IntEnum):
    """What the detector believes about a peer, in order of suspicion."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2


@dataclass(frozen=True, slots=True)
class StateChange:
    """A peer's state changed at ``at_s`` (local seconds) from ``previous`` to ``state``."""

    previous: PeerState
    state: PeerState
    at_s: float


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Tuning of a :class:`FailureDetector`. Durations in seconds.

    Attributes:
        min_interval_s: the shortest heartbeat interval ever recommended.
        max_interval_s: the longest heartbeat interval ever recommended.
        max_beats_per_s: the message budget: heartbeats per second the peer may send.
        interval_per_margin: the recommended interval as a fraction of the DEAD margin
            (beating faster than that buys little detection time).
        arrival_window: arrivals averaged for the expected-arrival estimate.
        suspect_factor: SUSPECT margin = factor * recent worst lateness + floor.
        suspect_floor_s: see ``suspect_factor``.
        suspect_memory_s: how far back "recent" goes for the SUSPECT margin.
        dead_factor: the factor on the worst spike and the worst pause in the DEAD margin
            (see :func:`~hybrid.messaging.prior.evidence_margin_s`).
        dead_floor_s: added to the DEAD margin.
        dead_memory_s: how far back everyday lateness counts for the DEAD margin.
        anomaly_memory_s: how far back delay spikes and pauses count for the DEAD margin:
            they are rare, so a few hours hold too few of them to know their worst.
        tail_extrapolation: everyday lateness counts in the DEAD margin as its worst value
            plus this many times its tail scale (the mean positive lateness). For an
            exponential tail, ``k`` scales cover ``e**k`` times more messages than the
            memory held at the same odds of one being later.
        initial_allowance_s: the DEAD margin granted to a peer not yet known, when no
            group prior with enough evidence is given.
        trust_half_life_s: acquaintance after which that allowance has halved.
        bumpy_trust_half_life_s: the same, once the peer has shown an anomaly.
        anomaly_s: a pause or a network lateness at least this long is an anomaly. Each
            one also counts as a sample of the tail: with few of them, the DEAD margin
            takes a wider safety factor (``dead_factor * (1 + 1 / (1 + anomalies))``).
        prior_min_observations: the messages a group prior must have pooled before it
            replaces ``initial_allowance_s``.
        max_poll_gap_s: a longer gap between ``state()`` calls means the local loop
            stalled; call ``state()`` at least twice as often.
        stall_grace_s: how long escalation is held after a local stall.
    """

    min_interval_s: float = 0.05
    max_interval_s: float = 5.0
    max_beats_per_s: float = 3.0
    interval_per_margin: float = 0.125
    arrival_window: int = 100
    suspect_factor: float = 1.5
    suspect_floor_s: float = 0.05
    suspect_memory_s: float = 60.0
    dead_factor: float = 1.2
    dead_floor_s: float = 0.1
    dead_memory_s: float = 6 * 3600.0
    anomaly_memory_s: float = 24 * 3600.0
    tail_extrapolation: float = 6.0  # e**6 = 400 times the memory's messages
    initial_allowance_s: float = 5.0  # covers a process or VM pause of a few seconds
    trust_half_life_s: float = 1800.0
    bumpy_trust_half_life_s: float = 7200.0
    anomaly_s: float = 0.5
    prior_min_observations: int = 1000  # five minutes of three peers at 1 beat/s
    max_poll_gap_s: float = 0.15
    stall_grace_s: float = 0.2

    @classmethod
    def fixed_interval(cls, interval_s: float, **overrides: float) -> DetectorConfig:
        """Return a configuration for a peer that beats every ``interval_s``, whatever we ask.

        For instance local workers stamping a shared-memory heartbeat every 50 ms:
        ``DetectorConfig.fixed_interval(0.05, initial_allowance_s=1.0)``.
        """
        fixed = {"min_interval_s": interval_s, "max_interval_s": interval_s}
        return cls(**{**fixed, "max_beats_per_s": 1.0 / interval_s, **overrides})  # type: ignore[arg-type]

    @property
    def shortest_interval_s(self) -> float:
        """The shortest interval the bounds and the message budget both allow."""
        return max(self.min_interval_s, 1.0 / self.max_beats_per_s)


class FailureDetector:
    """Judges one peer from the timing of its messages; driven by explicit timestamps.

    Feed it every message from the peer (any message counts as a heartbeat) and poll it::

        detector.observe(sent_time, received_at)   # peer's clock, local clock (seconds)
        detector.state(now)                        # at least every max_poll_gap_s / 2

    ``sent_time`` may be any clock of the peer's (wall or monotonic) as long as it is the
    same one every time; ``received_at`` and ``now`` are one local clock. For a peer on the
    same host both can be ``time.monotonic()``.

    A peer never heard from is ALIVE (its clock starts with the first message). The
    detector assumes the peer beats at :meth:`heartbeat_interval` (or at the longer
    interval it actually shows); for a peer that beats at a fixed rate, configure it with
    :meth:`DetectorConfig.fixed_interval`.

    State changes happen inside ``observe`` and ``state`` and are announced to
    subscribers (:meth:`subscribe`) and awaiters (:meth:`changed`, :meth:`wait_for`).
    A message from a peer marked DEAD brings it back to ALIVE (counted in
    ``resurrections``).

    Args:
        config: the tuning; the defaults suit peers beating over a network.
        prior: evidence pooled over the peer's group, shared by the group's detectors: it
            sets the DEAD margin of a peer too new to have shown its own tail (instead of
            ``initial_allowance_s``), and this detector adds what it sees to it. It only
            ever widens the margin the peer's own evidence calls for.
    """

    def __init__(
        self, config: DetectorConfig | None = None, prior: GroupPrior | None = None
    ) -> None:
        self.config = config = config or DetectorConfig()
        self.prior = prior
        self.observations = 0
        self.pauses = 0
        self.loop_stalls = 0
        self.resurrections = 0
        self.anomalies = 0
        self._in_late_episode = False
        self._state = PeerState.ALIVE
        self._transits = WindowMean(config.arrival_window)
        self._recent_late = WindowMax(config.suspect_memory_s)
        self._jitter_late = WindowMax(config.dead_memory_s)
        self._late_scale = WindowMean(config.arrival_window)
        self._spike_late = WindowMax(config.anomaly_memory_s)
        self._pause = WindowMax(config.anomaly_memory_s)
        self._first_at = 0.0
        self._trusting = config.initial_allowance_s > 0
        self.dead_margin_s = self._prior_margin_s(0.0)
        self._interval_s = max(
            config.shortest_interval_s,
            min(config.max_interval_s, self.dead_margin_s * config.interval_per_margin),
        )
        self._regular_gap_s = self._interval_s
        self._last_sent = float("-inf")
        self._last_poll: float | None = None
        self._hold_until = float("-inf")
        self._pending_pause: tuple[float, float, float] | None = None  # gap start, end, pause
        self.expected_arrival_s = float("inf")
        self.suspect_margin_s = config.suspect_floor_s
        self._suspect_at = self._dead_at = float("inf")
        self._subscribers: list[Callable[[StateChange], None]] = []
        self._waiters: list[tuple[PeerState | None, asyncio.Future[StateChange]]] = []

    @property
    def current(self) -> PeerState:
        """The state as of the last ``observe`` or ``state`` call."""
        return self._state

    def heartbeat_interval(self) -> float:
        """Return the interval, in seconds, at which the peer should send heartbeats."""
        return self._interval_s

    def observe(self, sent_time: float, received_at: float) -> None:
        """Account for one message from the peer (seconds: its clock, then ours)."""
        self.observations += 1
        if self.prior is not None:
            self.prior.observations += 1
        transit_s = received_at - sent_time
        if self.observations == 1:
            self._first_at, self._last_sent = received_at, sent_time
            self._transits.add(transit_s)
        else:
            self._account(sent_time, received_at, transit_s)
        self._update_margins(received_at)
        if self._state is not PeerState.ALIVE:
            if self._state is PeerState.DEAD:
                self.resurrections += 1
            self._set(PeerState.ALIVE, received_at)

    def _account(self, sent_time: float, received_at: float, transit_s: float) -> None:
        late_s = transit_s - self._transits.mean
        gap_s = sent_time - self._last_sent
        if gap_s > 0:
            self._commit_pause(received_at)
            expected_gap_s = max(self._interval_s, self._regular_gap_s)
            pause_s = gap_s - expected_gap_s
            tolerance_s = PAUSE_FRACTION * expected_gap_s
            if pause_s > tolerance_s and late_s < tolerance_s:
                self._pending_pause = (self._last_sent, sent_time, pause_s)
            elif pause_s <= tolerance_s:
                self._regular_gap_s = gap_s
            # else: it came late through a slow network; the gap is likely still in flight.
            self._last_sent = sent_time
        elif self._pending_pause is not None and self._pending_pause[0] < sent_time:
            # A reordered message filled the gap: the network shuffled them, no one paused.
            self._pending_pause = None
        if received_at < self._hold_until:
            return  # read late because this process stalled: no evidence about the network
        self._transits.add(transit_s)
        episode = late_s >= self.config.anomaly_s
        if late_s > 0:
            self._recent_late.add(late_s, received_at)
            if episode:
                self._spike_late.add(late_s, received_at)
            else:
                self._jitter_late.add(late_s, received_at)
                self._late_scale.add(late_s)
            if self.prior is not None:
                self.prior.add_late(late_s, episode, received_at)
        if episode and not self._in_late_episode:
            self._count_anomaly()
        self._in_late_episode = episode

    def _count_anomaly(self) -> None:
        self.anomalies += 1
        if self.prior is not None:
            self.prior.anomalies += 1

    def _commit_pause(self, now: float) -> None:
        """Count the last gap as a pause once no reordered message has filled it."""
        if self._pending_pause is not None:
            pause_s = self._pending_pause[2]
            self.pauses += 1
            if pause_s >= self.config.anomaly_s:
                self._count_anomaly()
            self._pause.add(pause_s, now)
            if self.prior is not None:
                self.prior.add_pause(pause_s, now)
            self._pending_pause = None

    def evidence(self) -> Evidence:
        """Return what this peer alone has shown, as plain data."""
        return Evidence(
            self.observations,
            self._jitter_late.value,
            self._late_scale.mean,
            self._spike_late.value,
            self._pause.value,
            self.anomalies,
        )

    def _prior_margin_s(self, now: float) -> float:
        """The DEAD margin granted before the peer's own evidence counts, in seconds."""
        config = self.config
        prior = self.prior
        if prior is not None and prior.observations >= config.prior_min_observations:
            return prior.margin_s(config)
        if not self._trusting:
            return 0.0
        age_s = now - self._first_at
        half_life_s = config.bumpy_trust_half_life_s if self.anomalies else config.trust_half_life_s
        allowance_s = config.initial_allowance_s * math.exp2(-age_s / half_life_s)
        self._trusting = allowance_s > config.dead_floor_s / 100  # negligible from then on
        return allowance_s

    def _update_margins(self, now: float) -> None:
        config = self.config
        self.suspect_margin_s = config.suspect_factor * self._recent_late.value
        self.suspect_margin_s += config.suspect_floor_s
        measured_s = margin_s(
            config,
            self._jitter_late.value,
            self._late_scale.mean,
            self._spike_late.value,
            self._pause.value,
            self.anomalies,
        )
        self.dead_margin_s = max(self._prior_margin_s(now), measured_s, self.suspect_margin_s)
        self._interval_s = min(
            config.max_interval_s,
            max(config.shortest_interval_s, self.dead_margin_s * config.interval_per_margin),
        )
        expected_gap_s = max(self._interval_s, self._regular_gap_s)
        self.expected_arrival_s = self._last_sent + expected_gap_s + self._transits.mean
        self._suspect_at = self.expected_arrival_s + self.suspect_margin_s
        self._dead_at = self.expected_arrival_s + self.dead_margin_s

    def evaluate(self, now: float) -> PeerState:
        """Return the state the peer would be in at ``now``, changing nothing."""
        if now < self._hold_until or now < self._suspect_at:
            return self._state
        return PeerState.DEAD if now >= self._dead_at else max(self._state, PeerState.SUSPECT)

    def state(self, now: float) -> PeerState:
        """Return the peer's state at ``now`` (local seconds), escalating if it is overdue.

        A gap since the previous call longer than ``max_poll_gap_s`` is taken as a stall
        of the local loop: escalation is then held for ``stall_grace_s``.
        """
        last_poll, self._last_poll = self._last_poll, now
        if last_poll is not None and now - last_poll > self.config.max_poll_gap_s:
            self.loop_stalls += 1
            self.hold(now + self.config.stall_grace_s)
        new = self.evaluate(now)
        if new is not self._state:
            self._set(new, now)
        return new

    def hold(self, until_s: float) -> None:
        """Escalate no further before ``until_s`` (local seconds): this process lagged."""
        self._hold_until = max(self._hold_until, until_s)

    def subscribe(self, callback: Callable[[StateChange], None]) -> Callable[[], None]:
        """Call ``callback`` on every state change; return a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def changed(self) -> StateChange:
        """Wait for the next state change and return it."""
        return await self._wait(None)

    async def wait_for(self, state: PeerState) -> StateChange:
        """Wait until the peer enters ``state`` (returns at once if it is already there)."""
        if self._state is state:
            return StateChange(state, state, self._last_poll or 0.0)
        return await self._wait(state)

    async def _wait(self, state: PeerState | None) -> StateChange:
        future: asyncio.Future[StateChange] = asyncio.get_running_loop().create_future()
        entry = (state, future)
        self._waiters.append(entry)
        try:
            return await future
        finally:
            self._waiters.remove(entry)

    def _set(self, state: PeerState, at_s: float) -> None:
        change = StateChange(self._state, state, at_s)
        self._state = state
        for callback in list(self._subscribers):
            callback(change)
        for wanted, future in self._waiters:
            if (wanted is None or wanted is state) and not future.done():
                future.set_result(change)
