"""An event-driven simulation of one peer beating to one receiver, on a simulated clock.

Nothing sleeps: the loop jumps from event to event (a send, a delivery, a poll of the
detector, a kill experiment), so hundreds of peer-hours take seconds. The receiver polls
its detector every ``tick_s`` except while its own loop is stalled; after a stall it polls
first and reads the queued messages second (the order that hurts a detector most).

A kill is an experiment on a copy: the detector is cloned at the kill time, receives only
the messages already in flight, and is polled until it says DEAD. The original peer lives
on, so every simulated hour also counts towards the false-alarm figures.
"""

from __future__ import annotations

import copy
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from benchmarks._traces import Intervals, Network, Trace, poisson_intervals
from hybrid.messaging import PeerState

KILL_GIVE_UP_S = 300.0  # a detector that has not said DEAD by then never will


class Detector(Protocol):
    def heartbeat_interval(self) -> float: ...
    def observe(self, sent_time: float, received_at: float) -> None: ...
    def state(self, now: float) -> PeerState: ...


@dataclass
class Plan:
    """How long to simulate one peer and when to kill it. Seconds."""

    horizon_s: float
    tick_s: float
    warmup_s: float  # steady-state kills start after this much acquaintance
    kill_every_s: float
    fresh_kill_range_s: tuple[float, float]  # kills of a newly met peer, at this age
    fresh_kills: int = 1  # how many kill experiments at that age
    recorded_observations: int = 0  # (sent, received) pairs kept for the CPU replay


@dataclass
class PeerOutcome:
    """What happened to one simulated peer."""

    hours: float = 0.0
    false_suspects: int = 0
    false_deads: int = 0
    heartbeats: int = 0
    polls: int = 0
    steady_kills_s: list[float] = field(default_factory=list)
    fresh_kills_s: list[float] = field(default_factory=list)
    recorded: list[tuple[float, float]] = field(default_factory=list)


class Polls:
    """The receiver's poll times: every tick, none inside its stalls, one at each stall's end."""

    def __init__(self, tick_s: float, stalls: Intervals) -> None:
        self.tick_s = tick_s
        self.stalls = stalls

    def after(self, t: float) -> float:
        tick = (math.floor(t / self.tick_s) + 1) * self.tick_s
        if tick <= t:  # t / tick_s rounded down past an exact multiple
            tick += self.tick_s
        if not self.stalls.starts:
            return tick
        return self.stalls.end_of(tick)


def simulate_peer(
    trace: Trace,
    make_detector: Callable[[], Detector],
    seed: int,
    plan: Plan,
    receiver_stalls: Intervals,
) -> PeerOutcome:
    """Run one peer for ``plan.horizon_s`` simulated seconds."""
    rng = random.Random(seed)
    network = Network(trace, rng, plan.horizon_s)
    sender_stalls = poisson_intervals(
        rng, trace.sender_stalls_per_hour, trace.sender_stall_range_s, plan.horizon_s
    )
    kills = _kill_times(rng, plan)
    rate = 1.0 + trace.clock_drift_ppm * 1e-6
    polls = Polls(plan.tick_s, receiver_stalls)
    detector = make_detector()
    earliest_change_at: Callable[[], float] | None = getattr(detector, "earliest_change_at", None)
    outcome = PeerOutcome(hours=plan.horizon_s / 3600)
    in_flight: list[tuple[float, float]] = []  # (delivery time, sender's sent_time)
    next_send = rng.uniform(0, detector.heartbeat_interval())
    next_poll = polls.after(0.0)
    next_kill = kills.pop() if kills else math.inf
    last = PeerState.ALIVE
    while True:
        delivery = in_flight[0][0] if in_flight else math.inf
        t = min(next_send, delivery, next_kill)
        if t >= plan.horizon_s:
            return outcome
        # Every poll due up to and including t comes first (polls precede reads).
        while next_poll <= t:
            outcome.polls += 1
            state = detector.state(next_poll)
            if state is not last:
                outcome.false_suspects += state is PeerState.SUSPECT
                outcome.false_deads += state is PeerState.DEAD
                last = state
            next_poll = _next_poll(polls, next_poll, earliest_change_at)
        if t == next_kill:
            delay_s = _time_to_dead(detector, sorted(in_flight), polls, t)
            target = outcome.fresh_kills_s if t < plan.warmup_s else outcome.steady_kills_s
            target.append(delay_s)
            next_kill = kills.pop() if kills else math.inf
        elif t == delivery:
            _, sent_time = heapq.heappop(in_flight)
            detector.observe(sent_time, t)
            last = PeerState.ALIVE
            if len(outcome.recorded) < plan.recorded_observations:
                outcome.recorded.append((sent_time, t))
            if earliest_change_at is not None:
                next_poll = _next_poll(polls, t, earliest_change_at)
        else:
            outcome.heartbeats += 1
            arrival = t + network.delay_s(t)
            sent_time = trace.clock_offset_s + t * rate
            heapq.heappush(in_flight, (receiver_stalls.end_of(arrival), sent_time))
            next_send = sender_stalls.end_of(t + detector.heartbeat_interval())


def _next_poll(polls: Polls, t: float, earliest_change_at: Callable[[], float] | None) -> float:
    """The next poll after ``t`` that could change the state (every tick without a hint)."""
    regular = polls.after(t)
    if earliest_change_at is None:
        return regular
    earliest = earliest_change_at()
    if earliest == math.inf:
        return math.inf
    return regular if earliest <= regular else max(regular, polls.after(earliest - 1e-9))


def _kill_times(rng: random.Random, plan: Plan) -> list[float]:
    """Kill times, latest first (popped from the end)."""
    times = [rng.uniform(*plan.fresh_kill_range_s) for _ in range(plan.fresh_kills)]
    start = plan.warmup_s
    while start + plan.kill_every_s <= plan.horizon_s:
        times.append(start + rng.uniform(0, plan.kill_every_s))
        start += plan.kill_every_s
    return sorted(times, reverse=True)


def _time_to_dead(
    detector: Detector, in_flight: list[tuple[float, float]], polls: Polls, killed_at: float
) -> float:
    """Poll a copy of ``detector`` after a kill at ``killed_at`` until it says DEAD."""
    clone = copy.deepcopy(detector)
    t = polls.after(killed_at)
    pending = iter(in_flight)
    upcoming = next(pending, None)
    while t - killed_at < KILL_GIVE_UP_S:
        while upcoming is not None and upcoming[0] < t:
            clone.observe(upcoming[1], upcoming[0])
            upcoming = next(pending, None)
        if clone.state(t) is PeerState.DEAD:
            return t - killed_at
        t = polls.after(t)
    return math.inf
