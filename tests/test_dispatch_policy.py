"""The dispatch policy on plain snapshots: which slot gets which tasks, with no process started."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import pytest

from hybrid._core.dispatch import (
    PIPELINE_BEHIND_S,
    InFlight,
    QueueView,
    Recycle,
    Send,
    SlotView,
    decide,
)
from hybrid._core.slot_state import SlotState
from hybrid._core.task import TaskState

ESTIMATES_S: dict[Hashable, float] = {
    "tiny": 0.0005,  # batchable: 8 calls fit one batch's budget
    "other_tiny": 0.0005,
    "quick": 0.01,  # short, not batchable
    "medium": PIPELINE_BEHIND_S / 2,  # not short, but may be waited behind under saturation
    "slow": 1.0,
}
QUICK_BATCH = InFlight(short=True, estimate_s=ESTIMATES_S["quick"])
MEDIUM_BATCH = InFlight(short=False, estimate_s=ESTIMATES_S["medium"])
SLOW_BATCH = InFlight(short=False, estimate_s=ESTIMATES_S["slow"])


@dataclass
class FakeTask:
    fn_key: Hashable = "quick"
    n_calls: int = 1
    timeout_s: float | None = None
    submitted_at: float = 0.0
    state: TaskState = TaskState.QUEUED


def slot(
    number: int,
    *in_flight: InFlight,
    state: SlotState = SlotState.SERVING,
    busy_s: float = 0.0,
    tasks_since_start: int = 0,
    calls_held: int = 0,
) -> SlotView:
    return SlotView(number, state, in_flight, busy_s, tasks_since_start, calls_held)


def run(
    slots: list[SlotView],
    queues: list[QueueView[FakeTask]],
    *,
    queued: int | None = None,
    max_tasks_per_child: int | None = None,
) -> list[Send[FakeTask] | Recycle]:
    if queued is None:
        queued = sum(len(queue.tasks) for queue in queues)
    return decide(
        slots,
        queues,
        ESTIMATES_S.get,
        queued=queued,
        max_tasks_per_child=max_tasks_per_child,
    )


def test_the_oldest_task_goes_first_whichever_queue_holds_it() -> None:
    shared = FakeTask(submitted_at=2.0)
    keyed = FakeTask(submitted_at=1.0)
    slots = [slot(0), slot(1)]
    queues = [QueueView([shared]), QueueView([keyed], bound=1)]
    assert run(slots, queues) == [Send(1, 1, [keyed])]

    keyed.submitted_at = 3.0
    assert run(slots, queues) == [Send(0, 0, [shared])]


def test_an_idle_slot_is_preferred_to_pipelining_and_the_least_busy_idle_one_wins() -> None:
    task = FakeTask("quick")
    busy = slot(0, QUICK_BATCH, busy_s=0.0)
    assert run([busy, slot(1, busy_s=9.0)], [QueueView([task])]) == [Send(1, 0, [task])]
    idle = [slot(0, busy_s=5.0), slot(1, busy_s=2.0), slot(2, busy_s=3.0)]
    assert run(idle, [QueueView([task])]) == [Send(1, 0, [task])]


def test_a_quick_task_may_wait_behind_a_quick_batch_a_slow_one_may_not() -> None:
    slots = [slot(0, QUICK_BATCH), slot(1, QUICK_BATCH), slot(2, QUICK_BATCH)]
    quick, slow = FakeTask("quick"), FakeTask("slow")
    assert run(slots, [QueueView([quick])]) == [Send(0, 0, [quick])]
    assert run(slots, [QueueView([slow])]) == []
    unknown = FakeTask("never_ran")  # no estimate yet: not known to be quick
    assert run(slots, [QueueView([unknown])]) == []


def test_a_quick_task_does_not_wait_behind_a_slow_batch_or_a_full_pipeline() -> None:
    quick = FakeTask("quick")
    assert run([slot(0, SLOW_BATCH)], [QueueView([quick])]) == []
    full = slot(0, QUICK_BATCH, QUICK_BATCH)
    assert run([full], [QueueView([quick])]) == []


def test_under_saturation_any_task_may_wait_behind_a_batch_under_pipeline_behind_s() -> None:
    slow = FakeTask("slow")
    slots = [slot(0, MEDIUM_BATCH), slot(1, MEDIUM_BATCH)]
    assert run(slots, [QueueView([slow])], queued=1) == []  # fewer queued than slots
    assert run(slots, [QueueView([slow])], queued=2) == [Send(0, 0, [slow])]
    behind_slow = [slot(0, SLOW_BATCH), slot(1, SLOW_BATCH)]
    assert run(behind_slow, [QueueView([slow])], queued=10) == []


def test_keyed_tasks_go_only_to_their_bound_slot() -> None:
    keyed = FakeTask("slow")
    queue = QueueView([keyed], bound=1)
    assert run([slot(0), slot(1, SLOW_BATCH)], [queue]) == []
    assert run([slot(0), slot(1)], [queue]) == [Send(1, 0, [keyed])]


def test_a_batch_groups_untimed_calls_of_one_function_up_to_the_batch_limit() -> None:
    tasks = [FakeTask("tiny", n_calls=3) for _ in range(4)]  # 8 calls fit the budget
    assert run([slot(0)], [QueueView(tasks)]) == [Send(0, 0, tasks[:2])]

    cancelled = FakeTask("tiny", state=TaskState.CANCELLED)
    singles = [FakeTask("tiny"), cancelled, FakeTask("tiny")]
    assert run([slot(0)], [QueueView(singles)]) == [Send(0, 0, [singles[0], singles[2]])]


def test_a_batch_never_mixes_functions_or_timed_calls() -> None:
    mixed = [FakeTask("tiny"), FakeTask("tiny"), FakeTask("other_tiny"), FakeTask("tiny")]
    assert run([slot(0)], [QueueView(mixed)]) == [Send(0, 0, mixed[:2])]
    timed = [FakeTask("tiny"), FakeTask("tiny", timeout_s=1.0), FakeTask("tiny")]
    assert run([slot(0)], [QueueView(timed)]) == [Send(0, 0, timed[:1])]
    timed_head = [FakeTask("tiny", timeout_s=1.0), FakeTask("tiny")]
    assert run([slot(0)], [QueueView(timed_head)]) == [Send(0, 0, timed_head[:1])]
    slow = [FakeTask("quick"), FakeTask("quick")]  # too slow to share a round trip
    assert run([slot(0)], [QueueView(slow)]) == [Send(0, 0, slow[:1])]


def test_the_max_tasks_per_child_quota_caps_a_batch() -> None:
    tasks = [FakeTask("tiny") for _ in range(6)]
    worn = slot(0, tasks_since_start=3)
    assert run([worn], [QueueView(tasks)], max_tasks_per_child=5) == [Send(0, 0, tasks[:2])]
    holding = slot(0, QUICK_BATCH, tasks_since_start=1, calls_held=3)
    assert run([holding], [QueueView([FakeTask("quick")])], max_tasks_per_child=4) == []


def test_a_chunk_larger_than_the_quota_left_goes_to_a_fresh_process() -> None:
    chunk = FakeTask("tiny", n_calls=4)
    worn, fresh = slot(0, tasks_since_start=3), slot(1, busy_s=9.0)
    decisions = run([worn, fresh], [QueueView([chunk])], max_tasks_per_child=5)
    assert decisions == [Recycle(0), Send(1, 0, [chunk])]
    assert run([worn], [QueueView([chunk])], max_tasks_per_child=5) == [Recycle(0)]
    # A fresh process takes a chunk larger than the whole quota: nothing fresher exists.
    big = FakeTask("tiny", n_calls=9)
    assert run([fresh], [QueueView([big])], max_tasks_per_child=5) == [Send(1, 0, [big])]


def test_a_busy_worn_slot_is_not_recycled_under_its_batch() -> None:
    chunk = FakeTask("quick", n_calls=4)
    worn = slot(0, QUICK_BATCH, tasks_since_start=2, calls_held=1)
    assert run([worn], [QueueView([chunk])], max_tasks_per_child=5) == []


@pytest.mark.parametrize("state", [state for state in SlotState if state is not SlotState.SERVING])
def test_a_slot_that_is_not_serving_gets_nothing(state: SlotState) -> None:
    task = FakeTask("quick")
    assert run([slot(0, state=state)], [QueueView([task])]) == []
    assert run([slot(0, state=state), slot(1)], [QueueView([task])]) == [Send(1, 0, [task])]
