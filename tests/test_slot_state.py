"""A worker slot's states: the one table of allowed moves, enforced."""

from __future__ import annotations

import pytest

from hybrid._core.slot_state import (
    TRANSITIONS,
    ForbiddenTransition,
    SlotState,
    check_move,
    on_death,
    on_shrink,
)


def test_a_forbidden_transition_raises() -> None:
    with pytest.raises(ForbiddenTransition, match="DEAD to SERVING"):
        check_move(SlotState.DEAD, SlotState.SERVING)
    with pytest.raises(ForbiddenTransition):
        check_move(SlotState.REMOVING, SlotState.REPLACING)  # a leaving slot is not restarted


def test_every_listed_move_is_allowed_and_any_state_may_stop() -> None:
    for state, targets in TRANSITIONS.items():
        for target in targets:
            assert check_move(state, target) is target
        assert check_move(state, SlotState.STOPPED) is SlotState.STOPPED


def test_a_death_or_a_shrink_keeps_what_was_decided_before_it() -> None:
    assert on_death(SlotState.RETIRING) is SlotState.DEAD
    assert on_death(SlotState.REMOVING) is SlotState.DEAD_REMOVING
    assert on_shrink(SlotState.DEAD) is SlotState.DEAD_REMOVING
    assert on_shrink(SlotState.REPLACING) is SlotState.LEAVING
    for state in (SlotState.SERVING, SlotState.RETIRING, SlotState.DEAD, SlotState.REPLACING):
        assert on_shrink(state) in TRANSITIONS[state]
        if state is not SlotState.REPLACING:
            assert on_death(state) in TRANSITIONS[state] | {state}
