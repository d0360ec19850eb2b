"""Where queued tasks wait: one shared queue, plus one per worker slot for keyed tasks.

A task submitted with ``key=`` goes to the slot that key is bound to, so tasks with the
same key reuse that worker's warm caches while it lives. The binding is made on first
use (to the least loaded slot) and kept in a bounded map; a slot removed by a resize
hands its keys and its waiting tasks to the others.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Iterator
from typing import TYPE_CHECKING

from .task import Task, TaskState

if TYPE_CHECKING:
    from .slot import Slot

MAX_KEYS = 100_000  # key bindings remembered; the least recently used is forgotten first


class WorkQueues:
    """The shared queue and the per-slot keyed queues, with a count of live tasks."""

    def __init__(self) -> None:
        self.shared: deque[Task] = deque()
        self.keyed: dict[Slot, deque[Task]] = {}
        self._bindings: OrderedDict[Hashable, Slot] = OrderedDict()
        self._keys_per_slot: dict[Slot, int] = {}
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add_slot(self, slot: Slot) -> None:
        self.keyed[slot] = deque()
        self._keys_per_slot[slot] = 0

    def remove_slot(self, slot: Slot, remaining: list[Slot]) -> None:
        """Forget a slot; its waiting keyed tasks are bound anew among ``remaining``."""
        waiting = self.keyed.pop(slot, deque())
        self._keys_per_slot.pop(slot, None)
        for key in [key for key, bound in self._bindings.items() if bound is slot]:
            del self._bindings[key]
        for task in waiting:
            if task.state is TaskState.QUEUED:
                self._queue_for(task, remaining).append(task)

    def push(self, task: Task, slots: list[Slot]) -> None:
        self._queue_for(task, slots).append(task)
        self.count += 1

    def push_front(self, tasks: Iterable[Task], slots: list[Slot]) -> None:
        """Put tasks back at the head of their queues, keeping their order."""
        for task in reversed(list(tasks)):
            self._queue_for(task, slots).appendleft(task)
            self.count += 1

    def heads(self) -> Iterator[tuple[deque[Task], Slot | None]]:
        """Each non-empty queue with the slot it is bound to (None: any slot)."""
        if _drop_dead_heads(self.shared):
            yield self.shared, None
        for slot, queue in self.keyed.items():
            if _drop_dead_heads(queue):
                yield queue, slot

    def bound_slot(self, key: Hashable) -> Slot | None:
        return self._bindings.get(key)

    def drain(self) -> Iterator[Task]:
        """Remove and yield every queued task."""
        for queue in [self.shared, *self.keyed.values()]:
            while queue:
                task = queue.popleft()
                if task.state is TaskState.QUEUED:
                    yield task
        self.count = 0

    def _queue_for(self, task: Task, slots: list[Slot]) -> deque[Task]:
        if task.key is None:
            return self.shared
        slot = self._bindings.get(task.key)
        if slot is None or slot not in self.keyed:
            slot = self._bind(task.key, slots)
        else:
            self._bindings.move_to_end(task.key)
        return self.keyed[slot]

    def _bind(self, key: Hashable, slots: list[Slot]) -> Slot:
        candidates = [slot for slot in slots if slot in self.keyed and not slot.going]
        slot = min(
            candidates,
            key=lambda s: (len(self.keyed[s]) + len(s.in_flight), self._keys_per_slot[s], s.index),
        )
        self._bindings[key] = slot
        self._keys_per_slot[slot] += 1
        if len(self._bindings) > MAX_KEYS:
            _, forgotten = self._bindings.popitem(last=False)
            self._keys_per_slot[forgotten] -= 1
        return slot


def _drop_dead_heads(queue: deque[Task]) -> bool:
    """Pop cancelled tasks off the front; True if a live task is left at the head."""
    while queue and queue[0].state is not TaskState.QUEUED:
        queue.popleft()
    return bool(queue)
