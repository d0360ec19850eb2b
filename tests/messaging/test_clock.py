"""Clock offset and transit: NTP formulas, the min-delay filter, drift, SRTT/RTTVAR."""

from __future__ import annotations

import random

import pytest

from hybrid.messaging import PeerClock, TransitStats, estimate_offset

MS = 1_000_000  # ns


def round_trip(
    clock: PeerClock, t1_ns: int, offset_ns: float, out_ns: int, back_ns: int, held_ns: int
) -> None:
    """We send at t1 (ours); the peer, offset_ns ahead, holds it, answers; we receive."""
    t3_peer_ns = int(t1_ns + out_ns + held_ns + offset_ns)
    t4_ns = t1_ns + out_ns + held_ns + back_ns
    clock.add_echo(t1_ns, held_ns, t3_peer_ns, t4_ns)


def test_ntp_formulas_recover_offset_and_delay() -> None:
    sample = estimate_offset(t1_ns=1000, held_ns=5, t3_ns=1000 + 10 + 5 + 3_000_000, t4_ns=1025)
    assert sample.offset_ns == pytest.approx(3_000_000 - 2.5)  # 10 out, 10 back: exact-ish
    assert sample.delay_ns == 20


def test_min_delay_filter_ignores_queueing_asymmetry() -> None:
    clock = PeerClock()
    rng = random.Random(1)
    offset_ns = 3_000 * MS
    for n in range(50):
        queued_ns = rng.choice([0, 0, 40 * MS, 200 * MS])  # one-way queueing skews the offset
        round_trip(clock, n * 100 * MS, offset_ns, 5 * MS + queued_ns, 5 * MS, MS)
    assert clock.offset_ns == pytest.approx(offset_ns, abs=0.5 * MS)
    assert clock.delay_ns == 10 * MS


def test_offset_follows_a_drifting_clock() -> None:
    clock = PeerClock()
    drift = 20e-6
    for n in range(20_000):  # one sample a second for 5.5 hours
        t1_ns = n * 1000 * MS
        round_trip(clock, t1_ns, 2_000 * MS + t1_ns * drift, 2 * MS, 2 * MS, 0)
    expected_ns = 2_000 * MS + 19_999 * 1000 * MS * drift  # about 400 ms of drift by now
    assert clock.offset_ns == pytest.approx(expected_ns, abs=0.1 * MS)


def test_transit_is_corrected_by_the_offset() -> None:
    clock = PeerClock()
    assert clock.add_transit(0, 5) is None  # no offset known yet
    round_trip(clock, 0, 3_000 * MS, 7 * MS, 7 * MS, 0)
    transit_s = clock.add_transit(sent_ns=10_000 * MS + 3_000 * MS, received_ns=10_007 * MS)
    assert transit_s == pytest.approx(0.007)


def test_same_host_peers_read_monotonic_stamps_directly() -> None:
    clock = PeerClock(same_host=True)
    assert clock.offset_ns == 0
    assert clock.add_transit(sent_ns=1_000 * MS, received_ns=1_002 * MS) == pytest.approx(0.002)
    round_trip(clock, 0, 5_000 * MS, MS, MS, 0)  # echoes cannot move a shared clock
    assert clock.offset_ns == 0


def test_srtt_and_rttvar_follow_rfc_6298() -> None:
    stats = TransitStats()
    stats.add(0.100)
    assert (stats.srtt_s, stats.rttvar_s) == (0.100, 0.050)
    stats.add(0.200)
    assert stats.rttvar_s == pytest.approx(0.75 * 0.050 + 0.25 * 0.100)
    assert stats.srtt_s == pytest.approx(0.875 * 0.100 + 0.125 * 0.200)
    for _ in range(98):
        stats.add(0.050)
    stats.add(2.0)
    assert stats.percentile(0.5) == 0.050
    assert stats.percentile(1.0) == 2.0
