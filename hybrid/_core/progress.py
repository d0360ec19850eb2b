"""Progress reported by running calls, brought to the loop by the pool's watch.

A worker writes the running call's latest report into its result area
(``hybrid.report_progress``); at each look the watch reads the reports that changed and
hands them to their tasks. A call's last report is read again as it settles, so a
quick call's final progress is not lost between two looks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .slot import Slot
    from .task import Task

logger = logging.getLogger("hybrid")

Progress = tuple[float, float | None]  # (done, total or None)
ProgressCallback = Callable[[float, float | None], object]


def deliver(slot: Slot) -> None:
    """Hand a busy worker's new progress report, if any, to the task it is about."""
    area = slot.area
    if area is None or not slot.in_flight:
        return
    report = area.progress_report()
    if report is None or report[0] == area.progress_seen:
        return
    area.progress_seen = report[0]
    _, call_id, done, total = report
    for batch in slot.in_flight:
        for task in batch.tasks:
            if task.id + task.first <= call_id < task.id + task.first + task.n_calls:
                note(task, (done, total))
                return


def deliver_final(task: Task) -> None:
    """Read a settled call's last report, if its worker has not moved on since."""
    batch = task.batch
    area = batch.slot.area if batch is not None else None
    if area is None:
        return
    report = area.progress_report()
    if report is not None and report[1] == task.id:
        note(task, (report[2], report[3]))


def note(task: Task, progress: Progress) -> None:
    if progress == task.progress:
        return
    task.progress = progress
    if task.on_progress is not None:
        try:
            task.on_progress(*progress)
        except Exception:
            logger.exception("on_progress callback of %s failed", task.name)
