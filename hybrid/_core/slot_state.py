"""The life of a worker slot as one state, with every allowed move written in one table.

A slot serves until it is told to retire (replace its process once its batches settle)
or to leave (the pool shrinks), or until its process dies. Its held batches settle
first; then its process is replaced, or the slot is removed.
"""

from __future__ import annotations

import enum


class SlotState(enum.Enum):
    STARTING = "starting"  # its first process is starting; takes no work yet
    SERVING = "serving"  # takes work
    RETIRING = "retiring"  # alive, takes no new work; replaced once its batches settle
    REMOVING = "removing"  # alive, takes no new work; removed once its batches settle
    DEAD = "dead"  # its process died or was killed; replaced once its batches settle
    DEAD_REMOVING = "dead_removing"  # as DEAD, but then removed (a shrink chose it)
    REPLACING = "replacing"  # the old process is taken off and a new one is starting
    LEAVING = "leaving"  # the old process is taken off and the slot is being removed
    STOPPED = "stopped"  # stopped with its pool


TRANSITIONS: dict[SlotState, frozenset[SlotState]] = {
    SlotState.STARTING: frozenset({SlotState.SERVING, SlotState.REMOVING}),
    SlotState.SERVING: frozenset({SlotState.RETIRING, SlotState.REMOVING, SlotState.DEAD}),
    SlotState.RETIRING: frozenset({SlotState.REMOVING, SlotState.DEAD, SlotState.REPLACING}),
    SlotState.REMOVING: frozenset({SlotState.DEAD_REMOVING, SlotState.LEAVING}),
    SlotState.DEAD: frozenset({SlotState.DEAD_REMOVING, SlotState.REPLACING}),
    SlotState.DEAD_REMOVING: frozenset({SlotState.LEAVING}),
    # A shrink may choose a slot while its process is being replaced: it leaves instead.
    SlotState.REPLACING: frozenset({SlotState.SERVING, SlotState.LEAVING}),
    # A process that started anyway serves no work and goes at once.
    SlotState.LEAVING: frozenset({SlotState.REMOVING}),
    SlotState.STOPPED: frozenset(),
}

ALIVE = frozenset({SlotState.SERVING, SlotState.RETIRING, SlotState.REMOVING})
GOING = frozenset({SlotState.REMOVING, SlotState.DEAD_REMOVING, SlotState.LEAVING})
# Once its batches have settled, a slot in one of these states is replaced or removed.
DONE_WHEN_EMPTY = frozenset(
    {SlotState.RETIRING, SlotState.REMOVING, SlotState.DEAD, SlotState.DEAD_REMOVING}
)


class ForbiddenTransition(AssertionError):
    """A slot was asked to move to a state it may not reach from its current one (a bug)."""


def check_move(current: SlotState, target: SlotState) -> SlotState:
    """Return ``target`` if a slot may move there from ``current``; raise otherwise.

    Raises:
        ForbiddenTransition: the table does not allow the move. Any state may stop.
    """
    if target is SlotState.STOPPED or target in TRANSITIONS[current]:
        return target
    raise ForbiddenTransition(f"a worker slot cannot go from {current.name} to {target.name}")


def on_death(state: SlotState) -> SlotState:
    """The state after a slot's process dies or is killed."""
    if state in (SlotState.REMOVING, SlotState.DEAD_REMOVING):
        return SlotState.DEAD_REMOVING
    return SlotState.DEAD


def on_shrink(state: SlotState) -> SlotState:
    """The state after a shrink chooses the slot."""
    if state is SlotState.STOPPED:
        return state
    if state is SlotState.DEAD:
        return SlotState.DEAD_REMOVING
    if state is SlotState.REPLACING:
        return SlotState.LEAVING
    return SlotState.REMOVING
