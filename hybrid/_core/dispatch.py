"""Which worker slot gets which queued tasks: the pool's dispatch policy, as pure functions.

The pool describes its slots (one :class:`SlotView` each) and its non-empty queues (one
:class:`QueueView` each, head first, the head still queued), and carries out what
:func:`decide` returns. Nothing here touches a process, the event loop or a clock.

The rules: the oldest queued task goes first, whichever queue holds it. An idle slot is
preferred, the least busy one first; a task may also be sent to wait behind the batch a
worker runs (see :func:`may_wait_behind`). A keyed task goes only to its bound slot. Quick
untimed calls of one function share a batch. A process runs at most
``max_tasks_per_child`` calls; a chunk larger than what it may still run goes to a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from itertools import islice
from typing import Generic, NamedTuple, Protocol, TypeVar

from .batching import batch_limit, is_batchable, is_short
from .slot_state import SlotState
from .task import TaskState

PIPELINE_DEPTH = 2  # batches a worker may hold: one running, one waiting to start at once
PIPELINE_BEHIND_S = 0.25  # a task sent behind another on its worker waits at most about this

Estimate = Callable[[Hashable], "float | None"]  # a function's mean run time, None if unknown


class QueuedTask(Protocol):
    """What the policy reads of a queued task."""

    @property
    def fn_key(self) -> Hashable: ...
    @property
    def n_calls(self) -> int: ...
    @property
    def timeout_s(self) -> float | None: ...
    @property
    def submitted_at(self) -> float: ...
    @property
    def state(self) -> TaskState: ...


T = TypeVar("T", bound=QueuedTask)


class InFlight(NamedTuple):
    """A batch a worker holds: may others wait behind it, and how long its calls take."""

    short: bool
    estimate_s: float | None


class SlotView(NamedTuple):
    """One slot as the policy sees it."""

    number: int  # the slot's index in its pool
    state: SlotState
    in_flight: tuple[InFlight, ...] = ()
    busy_s: float = 0.0
    tasks_since_start: int = 0  # calls its current process has finished
    calls_held: int = 0  # calls in its in-flight batches (counted only under a quota)


class QueueView(NamedTuple, Generic[T]):
    """A non-empty queue, its head still queued; ``bound`` is the one slot it feeds."""

    tasks: Sequence[T]
    bound: int | None = None


class Send(NamedTuple, Generic[T]):
    """Take ``tasks`` (in queue order) off queue number ``queue`` and send them to a slot."""

    slot: int
    queue: int
    tasks: list[T]


class Recycle(NamedTuple):
    """Replace the slot's process now (it may not run the chunk that wants it)."""

    slot: int


def decide(
    slots: Sequence[SlotView],
    queues: Sequence[QueueView[T]],
    estimate: Estimate,
    *,
    queued: int,
    max_tasks_per_child: int | None = None,
) -> list[Send[T] | Recycle]:
    """The next batch to send, after any recycling the search asked for; [] if none fits.

    Args:
        slots: every slot of the pool.
        queues: the non-empty queues.
        estimate: a function's mean run time in seconds (None until it has run).
        queued: tasks queued in all queues.
        max_tasks_per_child: calls one process may run; None for no limit.
    """
    recycle: list[Recycle] = []
    best: tuple[int, SlotView] | None = None
    best_at = 0.0
    for position, queue in enumerate(queues):
        head = queue.tasks[0]
        if best is not None and head.submitted_at >= best_at:
            continue
        slot = pick_slot(slots, head, queue.bound, estimate, queued, max_tasks_per_child, recycle)
        if slot is not None:
            best, best_at = (position, slot), head.submitted_at
    decisions: list[Send[T] | Recycle] = list(recycle)
    if best is not None:
        position, slot = best
        tasks = take_batch(queues[position].tasks, slot, estimate, max_tasks_per_child)
        decisions.append(Send(slot.number, position, tasks))
    return decisions


def pick_slot(
    slots: Sequence[SlotView],
    head: QueuedTask,
    bound: int | None,
    estimate: Estimate,
    queued: int,
    max_tasks_per_child: int | None,
    recycle: list[Recycle],
) -> SlotView | None:
    """The slot for ``head``: the least busy idle one, else one it may wait on.

    A slot whose process may not run ``head`` and should be replaced first is appended
    to ``recycle`` (and not picked again in this round).
    """
    short = is_short(estimate(head.fn_key))
    best: SlotView | None = None
    for slot in slots:
        if bound is not None and slot.number != bound:
            continue
        if recycle and Recycle(slot.number) in recycle:
            continue
        if not may_take(slot, head.n_calls, max_tasks_per_child):
            if needs_fresh_process(slot, head.n_calls, max_tasks_per_child):
                recycle.append(Recycle(slot.number))
            continue
        if is_idle(slot):
            if best is None or not is_idle(best) or slot.busy_s < best.busy_s:
                best = slot
        elif (
            best is None and can_pipeline(slot) and may_wait_behind(slot, short, queued, len(slots))
        ):
            best = slot
    return best


def is_idle(slot: SlotView) -> bool:
    return slot.state is SlotState.SERVING and not slot.in_flight


def can_pipeline(slot: SlotView) -> bool:
    """Whether a busy slot has room for a batch to wait behind the one it runs."""
    return slot.state is SlotState.SERVING and len(slot.in_flight) < PIPELINE_DEPTH


def may_wait_behind(slot: SlotView, short: bool, queued: int, n_slots: int) -> bool:
    """Whether a task may be sent to ``slot`` to start when its current batch ends.

    Quick tasks may wait behind quick batches. Under saturation (at least as many
    tasks queued as there are slots) any task may wait behind a batch estimated
    under PIPELINE_BEHIND_S: it would wait about that long in the queue anyway, and
    its worker then starts it without a round trip through this process (as the
    stdlib executor keeps a call queued ahead).
    """
    if short and all(batch.short for batch in slot.in_flight):
        return True
    if queued < n_slots:
        return False
    return all(
        batch.estimate_s is not None and batch.estimate_s < PIPELINE_BEHIND_S
        for batch in slot.in_flight
    )


def quota_left(slot: SlotView, max_tasks_per_child: int | None) -> int | None:
    """Calls the slot's current process may still be given; None without a quota."""
    if max_tasks_per_child is None:
        return None
    return max(0, max_tasks_per_child - slot.tasks_since_start - slot.calls_held)


def may_take(slot: SlotView, n_calls: int, max_tasks_per_child: int | None) -> bool:
    """Whether the slot's process may run ``n_calls`` more calls within its quota.

    A fresh process takes any chunk (its quota then cuts the chunk's batch).
    """
    quota = quota_left(slot, max_tasks_per_child)
    if quota is None:
        return True
    if n_calls <= quota or quota == max_tasks_per_child:
        return quota > 0
    return False


def needs_fresh_process(slot: SlotView, n_calls: int, max_tasks_per_child: int | None) -> bool:
    """Whether an idle slot should be recycled: the chunk is larger than its quota left."""
    quota = quota_left(slot, max_tasks_per_child)
    return quota is not None and n_calls > quota and quota != max_tasks_per_child and is_idle(slot)


def take_batch(
    queue: Sequence[T], slot: SlotView, estimate: Estimate, max_tasks_per_child: int | None
) -> list[T]:
    """The head, and the queued tasks after it that may share its round trip.

    Only untimed calls of one function quick enough to batch go together, up to the
    batch limit for their run time and the slot's quota; cancelled tasks are skipped.
    """
    head = queue[0]
    tasks = [head]
    estimate_s = estimate(head.fn_key)
    if head.timeout_s is not None or estimate_s is None or not is_batchable(estimate_s):
        return tasks
    limit = batch_limit(estimate_s)
    quota = quota_left(slot, max_tasks_per_child)
    if quota is not None:
        limit = min(limit, quota)
    calls = head.n_calls
    for task in islice(queue, 1, None):
        if task.state is not TaskState.QUEUED:
            continue
        if task.timeout_s is not None or task.fn_key != head.fn_key:
            break
        if calls + task.n_calls > limit:
            break
        tasks.append(task)
        calls += task.n_calls
    return tasks
