"""The failure detector, driven by explicit timestamps as a replayed trace would drive it."""

from __future__ import annotations

import asyncio

import pytest

from hybrid.messaging import DetectorConfig, FailureDetector, PeerGroup, PeerState, StateChange
from tests.messaging.traces import POLL_S, silence, steady, trusted

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py


def test_a_silent_peer_goes_suspect_then_dead_and_subscribers_hear_it() -> None:
    detector = trusted()
    seen: list[StateChange] = []
    unsubscribe = detector.subscribe(seen.append)
    assert steady(detector, until_s=120.0) == []
    dead_at = silence(detector, start_s=120.0, until_s=130.0)
    assert dead_at is not None
    assert dead_at - detector.expected_arrival_s < 0.3  # 50 ms +- 20 ms: a tight margin
    assert [change.state for change in seen] == [PeerState.SUSPECT, PeerState.DEAD]
    unsubscribe()
    detector.observe(131.0, 131.05)
    assert detector.current is PeerState.ALIVE
    assert detector.resurrections == 1
    assert len(seen) == 2


async def test_state_changes_can_be_awaited() -> None:
    detector = trusted()
    steady(detector, until_s=30.0)
    dead = asyncio.create_task(detector.wait_for(PeerState.DEAD))
    first = asyncio.create_task(detector.changed())
    await asyncio.sleep(0)
    silence(detector, start_s=30.0, until_s=40.0)
    change = await asyncio.wait_for(dead, timeout=5)
    assert (change.previous, change.state) == (PeerState.SUSPECT, PeerState.DEAD)
    assert (await asyncio.wait_for(first, timeout=5)).state is PeerState.SUSPECT
    assert (await detector.wait_for(PeerState.DEAD)).state is PeerState.DEAD  # already there


def test_expected_arrival_is_chen_toueg_aguilera_and_cancels_the_offset() -> None:
    detector = trusted()
    offset_s = 1_700_000_000.0  # a peer's wall clock read against our monotonic clock
    for n in range(10):
        detector.observe(offset_s + n * 0.3, n * 0.3 + 0.04)
    interval_s = detector.heartbeat_interval()
    assert detector.expected_arrival_s == pytest.approx(9 * 0.3 + interval_s + 0.04, abs=1e-6)


def test_clock_offset_and_drift_change_no_decision() -> None:
    plain, skewed = trusted(), trusted()
    assert steady(plain, until_s=3600.0, seed=5) == []
    assert steady(skewed, until_s=3600.0, seed=5, clock_offset_s=-3.0, drift_ppm=20.0) == []
    assert skewed.dead_margin_s == pytest.approx(plain.dead_margin_s, abs=1e-3)
    plain_dead = silence(plain, start_s=3600.0, until_s=3610.0)
    skewed_dead = silence(skewed, start_s=3600.0, until_s=3610.0)
    assert plain_dead == skewed_dead


def pause_sender(
    detector: FailureDetector, start_s: float, pause_s: float
) -> tuple[float | None, float]:
    """The peer stops sending for pause_s, then resumes.

    Returns when DEAD was said (None if never) and when the peer resumed.
    """
    last_sent = detector.expected_arrival_s - detector.heartbeat_interval() - 0.05
    dead_at = silence(detector, start_s=start_s, until_s=last_sent + pause_s + 0.05)
    resumed = last_sent + pause_s
    detector.observe(resumed, resumed + 0.05)
    return dead_at, resumed


def test_a_paused_sender_is_told_from_a_slow_network() -> None:
    detector = trusted()
    steady(detector, until_s=60.0, jitter_s=0.0)
    # First pause of 2 s: the peer was never seen pausing, so it is convicted, then forgiven.
    dead_at, resumed = pause_sender(detector, 60.0, 2.0)
    assert dead_at is not None
    assert detector.resurrections == 1
    # The pause was the sender's (late sent_time), not the network's: it now allows for it.
    start = resumed + detector.heartbeat_interval()
    steady(detector, start_s=start, until_s=120.0, jitter_s=0.0)
    assert detector.pauses == 1
    assert pause_sender(detector, 120.0, 2.0)[0] is None
    assert detector.current is PeerState.ALIVE
    # A slow network (sent on time, arrived late) is not counted as a pause.
    slow = trusted()
    steady(slow, until_s=60.0, jitter_s=0.0)
    last_sent = slow.expected_arrival_s - slow.heartbeat_interval() - 0.05
    slow.observe(last_sent + slow.heartbeat_interval(), last_sent + 1.5)
    assert slow.pauses == 0


def test_a_new_peer_is_not_convicted_for_a_pause_of_a_few_seconds() -> None:
    detector = FailureDetector()
    steady(detector, until_s=60.0)
    assert pause_sender(detector, 60.0, 2.5)[0] is None
    assert detector.current is PeerState.ALIVE


def test_learned_tail_keeps_delay_spikes_from_convicting() -> None:
    detector = trusted()
    steady(detector, until_s=60.0, latency_s=0.2)
    sent = detector.expected_arrival_s - detector.heartbeat_interval() - 0.2
    # A 1.5 s delay spike: the next beat arrives 1.5 s late, sent on time.
    sent += detector.heartbeat_interval()
    silence(detector, start_s=60.0, until_s=sent + 1.7)
    detector.observe(sent, sent + 1.7)
    steady(detector, start_s=sent + 1.8, until_s=600.0, latency_s=0.2)
    assert detector.dead_margin_s >= 1.5
    sent = detector.expected_arrival_s - detector.heartbeat_interval() - 0.2
    assert (
        silence(detector, start_s=600.0, until_s=sent + detector.heartbeat_interval() + 1.7) is None
    )


def test_a_stall_of_the_local_loop_convicts_no_one() -> None:
    detector = trusted()
    steady(detector, until_s=60.0)
    last_sent = detector.expected_arrival_s - detector.heartbeat_interval() - 0.05
    # The loop is blocked for 2 s: no polls, no reads. The peer kept sending meanwhile.
    stall_end = 62.0
    assert detector.state(stall_end) is PeerState.ALIVE  # polled before the queue is read
    sent = last_sent + detector.heartbeat_interval()
    while sent < stall_end:
        detector.observe(sent, stall_end)
        sent += detector.heartbeat_interval()
    assert detector.loop_stalls == 1
    assert steady(detector, start_s=stall_end, until_s=70.0) == []
    assert detector.dead_margin_s < 0.5  # the late reads were not taken as network delay


def test_a_stalled_loop_still_convicts_a_peer_that_stays_silent() -> None:
    detector = trusted()
    steady(detector, until_s=60.0)
    assert detector.state(62.0) is PeerState.ALIVE
    assert silence(detector, start_s=62.0 + POLL_S, until_s=63.0) is not None


def beat_in_step(group: PeerGroup[str], peers: list[str], beats: int, start_s: float) -> float:
    """Every peer beats every 0.333 s for ``beats`` beats; the group is polled after each."""
    now = start_s
    for n in range(beats):
        sent = start_s + n * 0.333
        for peer in peers:
            group.observe(peer, sent, sent + 0.05)
        now = sent + 0.06
        group.states(now)
    return now


def test_every_peer_late_at_once_is_a_local_stall() -> None:
    group: PeerGroup[str] = PeerGroup(DetectorConfig(initial_allowance_s=0.0))
    peers = ["a", "b", "c", "d"]
    now = beat_in_step(group, peers, 100, 0.0)
    # Polls go on but nothing is read (the reader task starved) for almost a second.
    resumed = now + 0.9
    while now < resumed:
        now += POLL_S
        assert set(group.states(now).values()) == {PeerState.ALIVE}
    assert group.mass_stalls == 1
    beat_in_step(group, peers, 10, now)
    assert {group.detector(peer).current for peer in peers} == {PeerState.ALIVE}


def test_peers_that_all_stay_silent_are_still_convicted() -> None:
    group: PeerGroup[str] = PeerGroup(DetectorConfig(initial_allowance_s=0.0))
    peers = ["a", "b", "c", "d"]
    now = beat_in_step(group, peers, 100, 0.0)
    for _ in range(40):  # two seconds of silence from everyone
        now += POLL_S
        states = group.states(now)
    assert group.mass_stalls == 1
    assert set(states.values()) == {PeerState.DEAD}


def test_heartbeat_interval_stays_within_bounds_and_budget() -> None:
    assert FailureDetector().heartbeat_interval() == pytest.approx(0.625)  # 5 s prior / 8
    settled = trusted()
    steady(settled, until_s=60.0)
    assert settled.heartbeat_interval() == pytest.approx(1 / 3)  # budget: 3 beats/s
    fast = trusted(DetectorConfig(min_interval_s=0.05, max_beats_per_s=20.0))
    steady(fast, until_s=60.0, latency_s=0.001, jitter_s=0.0005)
    assert fast.heartbeat_interval() == pytest.approx(0.05)
    bounded = trusted(DetectorConfig(max_interval_s=0.3, max_beats_per_s=20.0))
    steady(bounded, until_s=60.0, latency_s=2.0, jitter_s=1.5)  # a very jittery path
    assert bounded.dead_margin_s > 8 * 0.3
    assert bounded.heartbeat_interval() == 0.3


def test_a_fixed_rate_local_peer_is_suspected_quickly_when_it_hangs() -> None:
    """Local workers stamp a heartbeat every 50 ms; a hung one must be suspected fast."""
    config = DetectorConfig.fixed_interval(0.05, initial_allowance_s=1.0)
    detector = FailureDetector(config)
    steady(detector, until_s=30.0, latency_s=0.005, jitter_s=0.004)
    assert detector.heartbeat_interval() == 0.05
    last_sent = detector.expected_arrival_s - 0.05 - 0.005
    now = 30.0
    while detector.state(now) is PeerState.ALIVE:
        now += 0.01
    assert now - last_sent < 0.25


def delay_spike(detector: FailureDetector, held_s: float, latency_s: float = 0.2) -> float:
    """Hold every beat the peer sends for ``held_s``, then drain; return when it ended."""
    interval_s = detector.heartbeat_interval()
    first_sent = detector.expected_arrival_s - latency_s
    released_at = first_sent + latency_s + held_s
    silence(detector, start_s=first_sent, until_s=released_at)  # the first may convict
    sent = first_sent
    while sent + latency_s < released_at:
        detector.observe(sent, released_at)
        sent += interval_s
    return sent


def test_a_delay_spike_is_remembered_longer_than_everyday_lateness() -> None:
    """Regression: on a spiky WAN a peer whose last hours held only small spikes was
    convicted by a larger one: the worst spike must outlive the everyday memory."""
    for anomaly_memory_s, remembered in ((600.0, True), (60.0, False)):
        config = DetectorConfig(
            initial_allowance_s=0.0, dead_memory_s=60.0, anomaly_memory_s=anomaly_memory_s
        )
        detector = FailureDetector(config)
        steady(detector, until_s=30.0, latency_s=0.2)
        resumed = delay_spike(detector, held_s=1.5)
        steady(detector, start_s=resumed, until_s=200.0, latency_s=0.2)
        resumed = delay_spike(detector, held_s=0.6)  # a small one, 3 minutes later
        steady(detector, start_s=resumed, until_s=260.0, latency_s=0.2)
        assert detector.pauses == 0
        assert (detector.dead_margin_s > 1.5 * config.dead_factor) is remembered
