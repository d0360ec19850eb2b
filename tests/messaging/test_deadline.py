"""Deadlines: the budget left on arrival accounts for transit; expired work is dropped."""

from __future__ import annotations

import pytest

from hybrid.messaging import DeadlineGate, Envelope, new_id, remaining_budget_s

MS = 1_000_000


def task(sent_ns: int, budget_ms: int | None) -> Envelope:
    deadline_ns = None if budget_ms is None else sent_ns + budget_ms * MS
    return Envelope(
        "task", "a", 1, sent_ns=sent_ns, mono_ns=0, boot_id=new_id(), deadline_ns=deadline_ns
    )


def test_remaining_budget_deducts_the_transit_and_ignores_the_senders_offset() -> None:
    sent_ns = 1_700_000_003_000 * MS  # a sender clock seconds off changes nothing
    assert remaining_budget_s(task(sent_ns, 100), transit_s=0.040) == pytest.approx(0.060)
    assert remaining_budget_s(task(sent_ns, 100), transit_s=None) == pytest.approx(0.100)
    assert remaining_budget_s(task(sent_ns, None), transit_s=0.040) is None


def test_expired_work_is_dropped_and_counted() -> None:
    gate = DeadlineGate()
    assert gate.admit(task(0, 50), transit_s=0.020)
    assert not gate.admit(task(0, 50), transit_s=0.060)
    assert gate.admit(task(0, None), transit_s=10.0)
    assert (gate.admitted, gate.expired) == (2, 1)
