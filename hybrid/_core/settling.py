"""Settling a batch: the calls it finished, the one its worker died on, and the rest.

When a batch comes back whole, every call has an outcome. When its worker died, the
result area tells which calls finished (they are settled from their records), which
call was running (it alone is blamed: timed out, crashed, or retried) and which never
started (they go back to the queue, to run exactly once).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import EngineClosed, MemoryLimitExceeded, TaskTimeout, WorkerCrashed
from ..isolation import is_memory_limit_error
from .batching import TaskTimes
from .outcome import Outcome, failed, read_records, rebuild_error
from .resolving import Resolver
from .stats import Counters
from .task import Batch, Task, TaskState
from .worker import BatchReport

if TYPE_CHECKING:
    from .slot import Slot


CHUNK_SAMPLES = 64  # task-time samples one chunk adds, whatever its size
MAX_MEMORY_KILLS = 2  # times a call is run again after its worker was killed for memory


class _Crashed(Exception):
    """Marks a call that crashed its worker; its WorkerCrashed is made later."""


CRASHED = _Crashed()


class Settler:
    """Turns outcomes into results, counts them, and hands back what must run again."""

    def __init__(
        self,
        counters: Counters,
        times: TaskTimes,
        requeue: Callable[[list[Task]], None],
        is_closing: Callable[[], bool],
        memory_limit_bytes: int | None = None,
        memory_kill_limit: Callable[[], int] = lambda: 0,
    ) -> None:
        self._memory_limit_bytes = memory_limit_bytes
        self._memory_kill_limit = memory_kill_limit
        self.pending_crashes: dict[Slot, list[tuple[Task, int, Batch]]] = {}
        self._counters = counters
        self._times = times
        self._requeue = requeue
        self._is_closing = is_closing
        self._resolver = Resolver()

    def settle_returned(self, batch: Batch, report: BatchReport) -> None:
        """The worker returned: its report covers the batch, or a prefix of it."""
        values, problems, task_seconds = report
        if not problems and _all_single_calls(batch.tasks, len(values)):
            self._settle_single_calls(batch, values, task_seconds)
            return
        self._apportion(batch, values, problems, task_seconds, running_unfinished=False)

    def _settle_single_calls(
        self, batch: Batch, values: list[Any], task_seconds: list[float]
    ) -> None:
        """A whole batch of single calls that all returned: the flood's common case.

        The same outcome as :meth:`_apportion`, with the bookkeeping done once for the
        batch rather than once per call: a batch of hundreds of calls is settled in one
        callback, so its cost per call is what the loop's other work waits for.
        """
        resolver = self._resolver
        finished, cancelled = TaskState.FINISHED, TaskState.CANCELLED
        for task, value, seconds in zip(batch.tasks, values, task_seconds, strict=True):
            task.run_s = (task.run_s or 0.0) + seconds
            task.first += 1
            task.n_calls = 0
            was_cancelled = task.state is cancelled
            task.state = finished
            if not was_cancelled:
                resolver.set_result(task.future, value)
        total_s = sum(task_seconds)
        count = len(task_seconds)
        counters = self._counters
        counters.durations_s.extend(task_seconds)
        counters.completed += count
        self._times.observe(batch.tasks[0].fn_key, total_s / count)
        batch.slot.busy_s += total_s
        batch.slot.tasks_done += count

    def settle_dead(self, batch: Batch) -> None:
        """The worker died: read what it finished from the area, blame the running call."""
        area = batch.slot.area
        assert area is not None
        finished, running = area.progress(batch.parity)
        names = (task.name for task in batch.tasks for _ in range(task.n_calls))
        values, problems = read_records(area.records(batch.parity), names)
        self._apportion(batch, values, problems, [], running_unfinished=running == finished)

    def fail(self, task: Task, error: BaseException) -> None:
        task.state = TaskState.FINISHED
        if not task.future.done():
            task.future.set_exception(error)

    def _apportion(
        self,
        batch: Batch,
        values: list[Any],
        problems: dict[int, Outcome],
        task_seconds: list[float],
        running_unfinished: bool,
    ) -> None:
        position = 0
        leftovers = []
        whole = len(batch.tasks) == 1 and len(values) == batch.tasks[0].n_calls
        for number, task in enumerate(batch.tasks):
            taken = values if whole else values[position : position + task.n_calls]
            own = _shifted(problems, position, len(taken)) if problems else {}
            position += len(taken)
            seconds = task_seconds[number] if number < len(task_seconds) else 0.0
            self._settle_calls(task, taken, own, seconds)
            if task.n_calls and running_unfinished:
                running_unfinished = False
                self._blame(task, batch)
            if task.n_calls and task.state is TaskState.DISPATCHED:
                leftovers.append(task)
        self._requeue(leftovers)

    def _settle_calls(
        self, task: Task, values: list[Any], problems: dict[int, Outcome], seconds: float
    ) -> None:
        if not values:
            return
        if seconds:
            task.run_s = (task.run_s or 0.0) + seconds
        skipped = sum(1 for outcome in problems.values() if outcome is None) if problems else 0
        ran = len(values) - skipped
        if ran:
            self._count(task, seconds, ran - (len(problems) - skipped), ran)
        self._record(task, values, problems)

    def _count(self, task: Task, total_s: float, succeeded: int, ran: int) -> None:
        counters = self._counters
        each_s = total_s / ran
        if ran == 1:
            counters.durations_s.append(each_s)
        else:
            # A chunk's calls are timed together: a few samples of their mean stand for them.
            counters.durations_s.extend(itertools.repeat(each_s, min(ran, CHUNK_SAMPLES)))
        counters.completed += succeeded
        counters.failed += ran - succeeded
        self._times.observe(task.fn_key, each_s)
        if task.batch is not None:
            task.batch.slot.busy_s += total_s
            task.batch.slot.tasks_done += ran

    def _record(self, task: Task, values: list[Any], problems: dict[int, Outcome]) -> None:
        """Hand settled calls to whoever waits for them."""
        if task.results is not None:
            task.results.store(task.first, values, problems)
            task.advance(len(values))
            self._finish_chunk_if_done(task)
            return
        task.advance(len(values))
        cancelled = task.state is TaskState.CANCELLED
        task.state = TaskState.FINISHED
        if cancelled:
            return
        if not problems:
            self._resolver.set_result(task.future, values[0])
            return
        outcome = problems[0]
        if outcome is not None:
            task.future.set_exception(self._explain(rebuild_error(outcome[2], task.name), task))

    def _explain(self, error: BaseException, task: Task) -> BaseException:
        """Name the hard memory limit when that is why an allocation failed."""
        limit = self._memory_limit_bytes
        if limit is None or not isinstance(error, MemoryError):
            return error
        if isinstance(error, MemoryLimitExceeded):
            return error
        pid = task.batch.slot.pid if task.batch is not None else None
        explained = MemoryLimitExceeded(task.name, limit, pid, "RLIMIT_AS")
        explained.__cause__ = error.__cause__
        return explained

    def _finish_chunk_if_done(self, task: Task) -> None:
        assert task.results is not None
        if task.n_calls or task.pending_blames:
            return
        cancelled = task.state is TaskState.CANCELLED
        task.state = TaskState.FINISHED
        if not cancelled and not task.future.done():
            task.future.set_result(task.results)

    def _blame(self, task: Task, batch: Batch) -> None:
        """Decide the fate of the call that was running when its worker died."""
        error = self._death_error(task, batch)
        if error is None:
            return
        if error is CRASHED:
            self._defer_crash(task, batch)
        elif task.is_chunk:
            self._record(task, [None], {0: failed(error)})
        else:
            self.fail(task, error)

    def _defer_crash(self, task: Task, batch: Batch) -> None:
        # The worker's exit code can be read safely only once its executor has joined it,
        # so the error is made then (see report_crashes); until then the call is settled
        # but its caller still waits.
        index = task.first
        if task.is_chunk:
            task.pending_blames += 1
            task.advance(1)
        else:
            task.state = TaskState.FINISHED
        self.pending_crashes.setdefault(batch.slot, []).append((task, index, batch))

    def report_crashes(self, slot: Slot, pid: int | None, exitcode: int | None) -> None:
        """Fail the calls its worker died on, now that the worker's exit code is known."""
        for task, index, batch in self.pending_crashes.pop(slot, []):
            error = WorkerCrashed(task.name, exitcode, pid, task.attempts, batch.kill_reason)
            if task.results is None:
                self.fail(task, error)
                continue
            task.results.problems[index] = failed(error)
            task.pending_blames -= 1
            self._finish_chunk_if_done(task)

    def _death_error(self, task: Task, batch: Batch) -> BaseException | None:
        if task.state is TaskState.CANCELLED:
            task.state = TaskState.FINISHED
            return None
        reason = batch.kill_reason
        if reason == "timeout":
            self._counters.timed_out += 1
            assert task.timeout_s is not None
            return TaskTimeout(task.name, task.timeout_s)
        if reason == "close":
            return EngineClosed("the engine was closed while the task ran")
        if reason == "memory":
            # Killed to save the machine's memory: not the call's fault, so it runs again
            # (without using a retry), unless that keeps happening to it.
            task.memory_kills += 1
            if task.memory_kills <= MAX_MEMORY_KILLS:
                return None
            pid = batch.slot.pid
            return MemoryLimitExceeded(task.name, self._memory_kill_limit(), pid, "killed")
        if reason == "cancel":
            # Killed to stop a cancelled call, but this one was running by then (a race):
            # it did not finish, so it runs again, without using a retry.
            return None
        if task.retries_left > 0 and not self._is_closing() and not task.is_chunk:
            task.retries_left -= 1
            return None  # left DISPATCHED: it is requeued with the calls that never ran
        self._counters.crashed += 1
        return CRASHED


def _all_single_calls(tasks: list[Task], returned: int) -> bool:
    """Whether every task is one plain call (no chunk) and every one returned."""
    return len(tasks) == returned and all(
        task.n_calls == 1 and task.results is None for task in tasks
    )


def _shifted(problems: dict[int, Outcome], start: int, count: int) -> dict[int, Outcome]:
    """The problems among calls ``start`` to ``start + count``, keyed from 0."""
    return {
        index - start: outcome
        for index, outcome in problems.items()
        if start <= index < start + count
    }


def hit_memory_limit(problems: dict[int, Outcome]) -> bool:
    """Whether a call failed for passing the hard memory limit (address space)."""
    return any(
        outcome is not None
        and not outcome[0]
        and isinstance(outcome[2], tuple)
        and is_memory_limit_error(str(outcome[2][1]))
        for outcome in problems.values()
    )
