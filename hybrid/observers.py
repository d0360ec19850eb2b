"""The observer seam: told when each task is submitted, starts in a worker and settles.

Every call through every path (``run``, ``submit``, ``submit_batch``, ``map``, web
adapters) passes the same three points, so one observer sees all the engine's work::

    class Printer:
        def task_submitted(self, event: TaskEvent) -> None: ...
        def task_started(self, event: TaskEvent) -> None: ...
        def task_settled(self, event: TaskEvent) -> None:
            print(event.function, event.outcome, event.run_s)

    engine = hybrid.Engine(observers=[Printer()])

``adapters.prometheus.EngineMetrics`` is one. Observers run on the event loop, inside the
engine's bookkeeping: they must be quick and must not block. An observer that raises is
logged and does not disturb the engine. With no observer the engine makes no events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

logger = logging.getLogger("hybrid")

# How a task ended, as TaskEvent.outcome says it.
OUTCOMES = ("completed", "failed", "crashed", "timed_out", "cancelled", "rejected")


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One task at one point of its life.

    Attributes:
        task_id: the engine's id of the task (0 for a call rejected before it had one).
        function: the function's qualified name.
        pool: the pool it runs in.
        calls: the calls it carries (more than 1 for a batch or a chunk of ``map``).
        outcome: None until it settles; then one of :data:`OUTCOMES`.
        queue_wait_s: seconds from submission to its start in a worker (a task sent to
            wait behind another on its worker is still queueing); None if it never ran.
        run_s: seconds it ran, as its worker timed it (from its dispatch when the
            worker died under it); None if it never ran.
        worker_pid: the process that ran it last; None if it never ran.
    """

    task_id: int
    function: str
    pool: str
    calls: int = 1
    outcome: str | None = None
    queue_wait_s: float | None = None
    run_s: float | None = None
    worker_pid: int | None = None


@runtime_checkable
class TaskObserver(Protocol):
    """What the engine tells about each task; implement all three (a no-op is fine)."""

    def task_submitted(self, event: TaskEvent) -> None:
        """The task was accepted into a queue (or rejected: then ``task_settled`` follows)."""

    def task_started(self, event: TaskEvent) -> None:
        """The task was sent to a worker (again, after a retry)."""

    def task_settled(self, event: TaskEvent) -> None:
        """The task ended; ``event.outcome`` says how."""


def tell(observers: Iterable[TaskObserver], point: str, event: TaskEvent) -> None:
    """Call ``point`` (e.g. ``"task_settled"``) on every observer; log what raises."""
    for observer in observers:
        try:
            getattr(observer, point)(event)
        except Exception:
            logger.exception("task observer %r failed in %s", observer, point)
