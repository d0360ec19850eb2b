"""Heartbeats piggyback on traffic: a peer that sends anything sends no extra beats."""

from __future__ import annotations

from hybrid.messaging import HeartbeatSchedule


def test_a_peer_sending_traffic_sends_no_extra_heartbeats() -> None:
    schedule = HeartbeatSchedule(interval_s=0.3)
    beats = 0
    now = 0.0
    for step in range(1, 2000):  # 20 s: traffic every 0.2 s for 10 s, then nothing
        now = step * 0.01
        if now < 10.0 and step % 20 == 0:
            schedule.note_sent(now)
        if schedule.is_due(now):
            schedule.note_sent(now, heartbeat=True)
            beats += 1
    assert schedule.heartbeats_sent == beats
    # One beat to open the schedule, then only after the traffic stopped: 10 s / 0.3 s.
    assert beats - 1 == int(10.0 / 0.3)


def test_a_beat_is_due_one_interval_after_the_last_message() -> None:
    schedule = HeartbeatSchedule(interval_s=0.5)
    assert schedule.is_due(0.0)
    schedule.note_sent(1.0)
    assert schedule.due_at() == 1.5
    assert not schedule.is_due(1.49)
    assert schedule.is_due(1.5)
