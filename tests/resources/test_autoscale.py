"""The autoscaling policy, driven by a hand-set monitor: bursts, an outside CPU hog, memory
pressure and a leaking worker give the decisions (and reasons) a user relies on, and
random load never pushes the pool out of its bounds or makes it flap."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings, strategies as st

from hybrid.autoscale import Action, AutoscaleConfig, Autoscaler, Cause, Decision, PoolLoad
from tests.resources.fakes import MIB, FakeMonitor


@dataclass
class Pool:
    """What the engine does with each decision, reduced to its bookkeeping."""

    workers: int
    busy: int = 0
    queued: int = 0
    pids: list[int] = field(default_factory=list)
    paused: bool = False
    next_pid: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def __post_init__(self) -> None:
        self.pids = [next(self.next_pid) for _ in range(self.workers)]

    def load(self) -> PoolLoad:
        return PoolLoad(self.workers, min(self.busy, self.workers), self.queued, tuple(self.pids))

    def apply(self, decision: Decision) -> None:
        if decision.action in (Action.GROW, Action.SHRINK):
            assert decision.workers is not None
            while len(self.pids) < decision.workers:
                self.pids.append(next(self.next_pid))
            del self.pids[decision.workers :]
            self.workers = decision.workers
        elif decision.action is Action.PAUSE:
            self.paused = True
        elif decision.action is Action.RESUME:
            self.paused = False
        else:  # RECYCLE and KILL: a fresh process takes the slot
            self.pids[self.pids.index(decision.pid)] = next(self.next_pid)  # type: ignore[arg-type]


@dataclass
class Harness:
    monitor: FakeMonitor
    policy: Autoscaler
    pool: Pool
    log: list[Decision] = field(default_factory=list)

    def tick(self, dt_s: float = 0.5) -> list[Decision]:
        self.monitor.now_s += dt_s
        sample = self.monitor.sample(self.pool.pids)
        decisions = self.policy.decide(sample, self.pool.load(), self.monitor.now_s)
        for decision in decisions:
            self.pool.apply(decision)
        self.log.extend(decisions)
        return decisions

    def run_for(self, seconds: float, dt_s: float = 0.5) -> list[Decision]:
        made = []
        for _ in range(round(seconds / dt_s)):
            made.extend(self.tick(dt_s))
        return made


def harness(workers: int, cores: int = 4, **config: object) -> Harness:
    monitor = FakeMonitor(cpu_count=cores)
    policy = Autoscaler(AutoscaleConfig(cores=cores, **config))  # type: ignore[arg-type]
    return Harness(monitor, policy, Pool(workers))


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1, decisions
    return decisions[0]


# Bursts


def test_a_backlog_that_lasts_grows_the_pool_to_its_cap_and_no_further() -> None:
    h = harness(workers=1)
    h.pool.busy, h.pool.queued = 1, 20_000
    h.monitor.set(cpu_percent=25.0, worker_cores={100: 1.0})
    assert h.tick(0.25) == []  # a backlog is not yet a lasting one
    decision = only(h.run_for(0.5, dt_s=0.25))
    assert (decision.action, decision.cause, decision.workers) == (Action.GROW, Cause.BACKLOG, 4)
    assert "20000 tasks queued" in decision.reason
    assert "1 -> 4 workers" in decision.reason
    h.pool.busy = 4
    h.monitor.set(cpu_percent=100.0, worker_cores={pid: 1.0 for pid in h.pool.pids})
    assert h.run_for(30) == []  # at the cap: nothing more to do, however long it lasts
    assert h.policy.state().decisions == {"grow.backlog": 1}


def test_a_small_backlog_grows_only_by_what_it_needs() -> None:
    h = harness(workers=1)
    h.pool.busy, h.pool.queued = 1, 2
    h.monitor.set(cpu_percent=25.0, worker_cores={100: 1.0})
    assert only(h.run_for(1)).workers == 3


def test_no_growth_while_the_cpu_has_no_room() -> None:
    h = harness(workers=2, max_workers=8)
    h.pool.busy, h.pool.queued = 2, 500
    h.monitor.set(cpu_percent=95.0)
    assert h.run_for(10) == []


def test_an_idle_pool_shrinks_to_its_minimum_after_the_idle_delay() -> None:
    h = harness(workers=4, min_workers=2, idle_shrink_after_s=30.0)
    assert h.run_for(30) == []  # idle since the first sample, at 0.5 s
    decision = only(h.tick())
    assert (decision.action, decision.cause, decision.workers) == (Action.SHRINK, Cause.IDLE, 2)
    assert h.run_for(120) == []


def test_a_burst_after_idle_grows_again_once_the_cooldown_has_passed() -> None:
    h = harness(workers=4, idle_shrink_after_s=10.0, cooldown_s=5.0)
    h.run_for(10.5)
    assert h.pool.workers == 1
    shrunk_at_s = h.log[-1].at_s
    h.pool.busy, h.pool.queued = 1, 1000
    h.monitor.set(cpu_percent=25.0)
    grow = only(h.run_for(10))
    assert grow.action is Action.GROW
    assert grow.at_s - shrunk_at_s >= 5.0


# An outside CPU hog, and steal


def hog_outside(h: Harness, cpu_percent: float = 100.0, steal_percent: float = 0.0) -> None:
    """Our workers use half the machine; the rest of ``cpu_percent`` is someone else's."""
    share = 0.5 * h.monitor.cpu_count / len(h.pool.pids)
    h.monitor.set(
        cpu_percent=cpu_percent,
        steal_percent=steal_percent,
        worker_cores={pid: share for pid in h.pool.pids},
    )


def test_an_outside_cpu_hog_shrinks_the_pool_to_eighty_percent_of_the_cores() -> None:
    h = harness(workers=4, cores=4)
    h.pool.busy, h.pool.queued = 4, 10_000
    hog_outside(h)
    assert h.run_for(1.5) == []  # pressure must last outside_after_s (2 s) first
    decision = only(h.run_for(1))
    assert (decision.action, decision.cause, decision.workers) == (
        Action.SHRINK,
        Cause.OUTSIDE_CPU,
        3,  # max(1, floor(4 x 0.8))
    )
    assert "50% used outside the engine" in decision.reason
    assert h.policy.state().outside_pressure
    # The backlog stays, but the cap holds while the hog runs.
    hog_outside(h)
    assert h.run_for(60) == []


def test_when_the_hog_stops_the_cap_lifts_after_a_calm_spell_and_the_backlog_regrows() -> None:
    h = harness(workers=4, cores=4, calm_after_s=10.0)
    h.pool.busy, h.pool.queued = 4, 10_000
    hog_outside(h)
    h.run_for(3)
    assert h.pool.workers == 3
    h.pool.busy = 3
    h.monitor.set(cpu_percent=75.0, worker_cores={pid: 1.0 for pid in h.pool.pids})
    assert h.run_for(9.5) == []  # calm, but not for long enough yet
    decision = only(h.run_for(1))
    assert (decision.action, decision.cause, decision.workers) == (Action.GROW, Cause.BACKLOG, 4)
    assert not h.policy.state().outside_pressure


def test_steal_counts_as_outside_pressure_and_is_named_in_the_reason() -> None:
    h = harness(workers=2, cores=2)
    h.pool.busy, h.pool.queued = 2, 100
    hog_outside(h, cpu_percent=90.0, steal_percent=40.0)
    decision = only(h.run_for(3))
    assert (decision.action, decision.workers) == (Action.SHRINK, 1)  # max(1, floor(1.6))
    assert "steal 40%" in decision.reason


def test_a_pool_started_above_the_cap_is_not_shrunk_without_pressure() -> None:
    h = harness(workers=6, cores=4, idle_shrink_after_s=None)
    h.pool.busy, h.pool.queued = 6, 100
    h.monitor.set(cpu_percent=100.0, worker_cores={pid: 0.66 for pid in h.pool.pids})
    assert h.run_for(30) == []


def test_a_busy_machine_kept_busy_by_our_own_workers_is_not_outside_pressure() -> None:
    h = harness(workers=4, cores=4)
    h.pool.busy, h.pool.queued = 4, 100
    h.monitor.set(cpu_percent=100.0, worker_cores={pid: 1.0 for pid in h.pool.pids})
    assert h.run_for(60) == []


def test_a_hog_that_comes_and_goes_faster_than_the_delays_changes_nothing() -> None:
    h = harness(workers=4, cores=4)
    h.pool.busy, h.pool.queued = 4, 100
    for _ in range(20):
        hog_outside(h)
        h.run_for(1.5)
        h.monitor.set(cpu_percent=100.0, worker_cores={pid: 1.0 for pid in h.pool.pids})
        h.run_for(1.5)
    assert h.log == []


# Memory pressure


def test_memory_pressure_pauses_recycles_the_largest_first_and_resumes_below_low_water() -> None:
    h = harness(workers=3)
    h.monitor.worker_rss = {100: 300 * MIB, 101: 900 * MIB, 102: 500 * MIB}
    h.monitor.set(memory_percent=85.0)
    pause, recycle = h.tick()
    assert (pause.action, pause.cause) == (Action.PAUSE, Cause.MEMORY_HIGH)
    assert "memory at 85% >= 80%" in pause.reason
    assert (recycle.action, recycle.pid) == (Action.RECYCLE, 101)
    assert "900 MB" in recycle.reason
    assert h.tick() == []  # one recycle per recycle_interval_s (1 s)
    assert only(h.tick()).pid == 102  # then the next largest
    h.monitor.set(memory_percent=75.0)  # under high water, not yet under low water
    assert only(h.tick(1.0)).pid == 100
    assert h.tick(1.0) == []  # the fresh workers are too small to be worth recycling
    assert h.policy.state().paused
    h.monitor.set(memory_percent=65.0)
    resume = only(h.tick())
    assert (resume.action, resume.cause) == (Action.RESUME, Cause.MEMORY_LOW)
    assert not h.pool.paused
    assert h.policy.state().decisions == {
        "pause.memory_high": 1,
        "recycle.memory_high": 3,
        "resume.memory_low": 1,
    }


def test_no_growth_while_intake_is_paused_for_memory() -> None:
    h = harness(workers=1)
    h.pool.busy, h.pool.queued = 1, 1000
    h.monitor.set(cpu_percent=25.0, memory_percent=85.0)
    assert [d.action for d in h.run_for(10)] == [Action.PAUSE]


def test_past_the_hard_limit_the_largest_worker_is_killed_even_if_already_recycling() -> None:
    h = harness(workers=2)
    h.monitor.worker_rss = {100: 2000 * MIB, 101: 100 * MIB}
    h.monitor.set(memory_percent=85.0)
    assert [d.action for d in h.tick()] == [Action.PAUSE, Action.RECYCLE]
    h.pool.pids[0] = 100  # its task is still running: the old process is still there
    h.monitor.set(memory_percent=97.0)
    kill = only(h.tick(1.0))
    assert (kill.action, kill.cause, kill.pid) == (Action.KILL, Cause.MEMORY_HARD, 100)
    assert "its task will run again" in kill.reason


def test_memory_swinging_inside_the_band_does_not_flap_pause_and_resume() -> None:
    h = harness(workers=2)
    for percent in [85, 79, 71, 78, 72, 79, 75] * 5:
        h.monitor.set(memory_percent=float(percent))
        h.tick()
    assert [d.action for d in h.log if d.action in (Action.PAUSE, Action.RESUME)] == [Action.PAUSE]


# A leaking worker


def test_a_leaking_worker_is_recycled_once_when_it_passes_max_rss() -> None:
    h = harness(workers=2, max_rss_bytes=200 * MIB)
    leaker = h.pool.pids[0]
    for rss_mb in (50, 100, 150):
        h.monitor.worker_rss = {leaker: rss_mb * MIB}
        assert h.tick() == []
    h.monitor.worker_rss = {leaker: 250 * MIB}
    decision = only(h.tick())
    assert (decision.action, decision.cause, decision.pid) == (
        Action.RECYCLE,
        Cause.WORKER_RSS,
        leaker,
    )
    assert "uses 250 MB > max_rss_bytes 200 MB" in decision.reason
    h.pool.pids[0] = leaker  # still finishing its task: asked once, not on every sample
    assert h.run_for(5) == []


def test_the_replacement_of_a_leaking_worker_is_judged_afresh() -> None:
    h = harness(workers=1, max_rss_bytes=200 * MIB)
    first = h.pool.pids[0]
    h.monitor.worker_rss = {first: 250 * MIB}
    h.tick()
    second = h.pool.pids[0]
    assert second != first
    h.monitor.worker_rss = {second: 260 * MIB}
    assert only(h.tick()).pid == second


# Settings


@pytest.mark.parametrize(
    "config",
    [
        {"min_workers": 0},
        {"min_workers": 3, "max_workers": 2},
        {"memory_low_percent": 85.0},
        {"memory_hard_percent": 75.0},
        {"calm_cpu_percent": 80.0},
        {"shrink_fraction": 0.0},
    ],
)
def test_inconsistent_settings_are_refused(config: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AutoscaleConfig(**config)  # type: ignore[arg-type]


def test_the_defaults_use_the_cpus_this_process_may_use() -> None:
    from hybrid import usable_cpus

    policy = Autoscaler()
    assert policy.cores == usable_cpus()
    assert policy.cap == policy.max_workers == usable_cpus()
    assert policy.pressure_cap == max(1, int(usable_cpus() * 0.8))


# Random load


step = st.tuples(
    st.sampled_from([0.1, 0.25, 0.5, 1.0, 3.0]),  # seconds since the last sample
    st.floats(0, 100),  # machine CPU percent
    st.floats(0, 1),  # share of it our workers explain
    st.floats(0, 100),  # memory percent
    st.integers(0, 5000),  # queued
    st.floats(0, 1),  # share of workers busy
)


@settings(max_examples=150, deadline=None)
@given(
    cores=st.integers(1, 16),
    min_workers=st.integers(1, 4),
    extra=st.integers(0, 12),
    steps=st.lists(step, min_size=1, max_size=120),
)
def test_random_load_keeps_bounds_cooldowns_and_alternating_pauses(
    cores: int,
    min_workers: int,
    extra: int,
    steps: list[tuple[float, float, float, float, int, float]],
) -> None:
    max_workers = min_workers + extra
    config = AutoscaleConfig(
        cores=cores, min_workers=min_workers, max_workers=max_workers, max_rss_bytes=500 * MIB
    )
    h = Harness(FakeMonitor(cpu_count=cores), Autoscaler(config), Pool(min_workers))
    for dt_s, cpu, ours, memory, queued, busy_share in steps:
        pids = h.pool.pids
        h.monitor.set(
            cpu_percent=cpu,
            memory_percent=memory,
            worker_cores={pid: cpu * cores / 100 * ours / len(pids) for pid in pids},
            worker_rss={pid: int(memory * 10) * MIB for pid in pids},
        )
        h.pool.queued, h.pool.busy = queued, round(busy_share * h.pool.workers)
        before = list(h.pool.pids)
        for decision in h.tick(dt_s):
            assert decision.reason
            if decision.pid is not None:
                assert decision.pid in before
        assert min_workers <= h.pool.workers <= max_workers
    resizes = [d.at_s for d in h.log if d.action in (Action.GROW, Action.SHRINK)]
    assert all(b - a >= config.cooldown_s for a, b in itertools.pairwise(resizes))
    pauses = [d.action for d in h.log if d.action in (Action.PAUSE, Action.RESUME)]
    assert all(a is not b for a, b in itertools.pairwise(pauses))
    assert pauses[:1] in ([], [Action.PAUSE])
    assert sum(h.policy.state().decisions.values()) == len(h.log)
