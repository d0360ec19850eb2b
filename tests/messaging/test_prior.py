"""A new peer is judged with what its group has learned (issue 14, item 4)."""

from __future__ import annotations

import pytest

from hybrid.messaging import DetectorConfig, Evidence, FailureDetector, PeerGroup, PeerState
from hybrid.messaging.prior import evidence_margin_s
from tests.messaging.traces import silence, steady

ELDERS = ["a", "b", "c"]
CONFIG = DetectorConfig()


def calm_group(until_s: float = 600.0) -> PeerGroup[str]:
    """A group whose three peers beat on a 50 ms +- 20 ms link for ten minutes."""
    group: PeerGroup[str] = PeerGroup(CONFIG)
    for seed, peer in enumerate(ELDERS):
        assert steady(group.detector(peer), until_s=until_s, seed=seed) == []
    return group


def paused_group() -> PeerGroup[str]:
    """A group whose peers each stopped sending for 2 s, now and then."""
    group: PeerGroup[str] = PeerGroup(CONFIG)
    for seed, peer in enumerate(ELDERS):
        detector = group.detector(peer)
        for start_s in (0.0, 200.0, 400.0):
            steady(detector, start_s=start_s, until_s=start_s + 198.0, seed=seed)
    return group


def time_to_dead(detector: FailureDetector, start_s: float) -> float:
    """Beat for 30 s from ``start_s``, then fall silent; return how long DEAD took."""
    steady(detector, start_s=start_s, until_s=start_s + 30.0, seed=9)
    last_arrival_s = detector.expected_arrival_s - detector.heartbeat_interval()
    dead_at = silence(detector, start_s=start_s + 30.0, until_s=start_s + 60.0)
    assert dead_at is not None
    return dead_at - last_arrival_s


def test_a_new_peer_in_a_calm_group_is_convicted_fast() -> None:
    group = calm_group()
    newcomer = time_to_dead(group.detector("new"), start_s=600.0)
    alone = time_to_dead(FailureDetector(CONFIG), start_s=600.0)
    assert newcomer < 1.0
    assert alone > 4.0  # the blank allowance: 5 s, halving every 30 minutes


def test_a_new_peer_in_a_group_that_saw_pauses_gets_the_wider_margin() -> None:
    group = paused_group()
    assert group.detector("a").pauses == 2
    newcomer = group.detector("new")
    steady(newcomer, start_s=600.0, until_s=630.0, seed=9)
    assert newcomer.dead_margin_s > 2.0 * CONFIG.dead_factor
    # The newcomer pauses like its elders did and is not convicted for it.
    last_sent_s = newcomer.expected_arrival_s - newcomer.heartbeat_interval() - 0.05
    assert silence(newcomer, start_s=630.0, until_s=last_sent_s + 2.0) is None
    newcomer.observe(last_sent_s + 2.0, last_sent_s + 2.05)
    assert newcomer.current is PeerState.ALIVE
    assert newcomer.resurrections == 0


def test_without_group_evidence_a_new_peer_gets_the_old_allowance() -> None:
    group: PeerGroup[str] = PeerGroup(CONFIG)
    newcomer, alone = group.detector("new"), FailureDetector(CONFIG)
    for detector in (newcomer, alone):
        detector.observe(0.0, 0.05)
    assert newcomer.dead_margin_s == alone.dead_margin_s == CONFIG.initial_allowance_s
    assert newcomer.heartbeat_interval() == alone.heartbeat_interval()


def test_the_prior_never_shrinks_the_margin_the_peers_own_evidence_requires() -> None:
    group = calm_group()
    prior_margin_s = group.prior.margin_s(CONFIG)
    spiky = group.detector("spiky")
    steady(spiky, start_s=600.0, until_s=660.0, latency_s=0.2)
    # A 1.5 s delay spike on the newcomer's own path: one beat sent on time arrives late.
    sent_s = spiky.expected_arrival_s - spiky.heartbeat_interval() - 0.2
    sent_s += spiky.heartbeat_interval()
    spiky.observe(sent_s, sent_s + 1.7)
    own_s = evidence_margin_s(spiky.evidence(), CONFIG)
    assert own_s > 1.5 > prior_margin_s
    assert spiky.dead_margin_s >= own_s
    # The calm elders keep their own, narrower margins.
    assert group.detector("a").dead_margin_s < 0.5


def test_the_margin_extends_the_measured_tail_by_its_scale() -> None:
    calm = Evidence(observations=10_000, jitter_late_s=0.02, late_scale_s=0.01)
    tailed = Evidence(observations=10_000, jitter_late_s=0.15, late_scale_s=0.0115)
    assert evidence_margin_s(calm, CONFIG) == pytest.approx(0.02 + 6 * 0.01 + 0.1)
    assert evidence_margin_s(tailed, CONFIG) == pytest.approx(0.15 + 6 * 0.0115 + 0.1)
    # One spike seen: its worst is doubled; many seen: the factor tends to dead_factor.
    one = Evidence(spike_late_s=1.0, anomalies=1)
    many = Evidence(spike_late_s=1.0, anomalies=99)
    assert evidence_margin_s(one, CONFIG) == pytest.approx(1.2 * 1.5 * 1.0 + 0.1)
    assert evidence_margin_s(many, CONFIG) == pytest.approx(1.2 * 1.01 * 1.0 + 0.1)
