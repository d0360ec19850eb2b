"""A pool of worker slots fed from one queue: dispatch, batching, timeouts, crashes, restarts."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.context
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from . import _batching
from ._area import MAX_BATCH
from ._errors import (
    EngineClosed,
    HybridError,
    Overloaded,
    TaskTimeout,
    WorkerCrashed,
    WorkerStartError,
)
from ._outcome import Outcome, failed, read_record, rebuild_error
from ._slot import PIPELINE_DEPTH, Slot
from ._stats import Counters, EngineStats, WorkerStats, percentile
from ._task import Batch, Task, TaskState

logger = logging.getLogger("hybrid")

RESTART_ATTEMPTS = 3  # tries to replace a dead worker before the slot is given up
RESTART_BACKOFF_S = 0.1  # first pause between those tries; doubles each time


class Pool:
    """Worker slots and the queue that feeds them."""

    def __init__(
        self,
        size: int,
        *,
        context: multiprocessing.context.BaseContext,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        max_tasks_per_child: int | None,
        max_queued: int | None,
    ) -> None:
        self.slots = [Slot(i, context, initializer, initargs) for i in range(size)]
        self.max_tasks_per_child = max_tasks_per_child
        self.max_queued = max_queued
        self.queue: deque[Task] = deque()
        self.queued = 0
        self.counters = Counters()
        self.times = _batching.TaskTimes()
        self.closing = False
        self._failing_all: BaseException | None = None
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._restarts: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()

    # Life cycle

    async def start(self) -> None:
        starts = (slot.start() for slot in self.slots)
        results = await asyncio.gather(*starts, return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            await asyncio.gather(*(slot.stop() for slot in self.slots))
            raise errors[0]

    async def close(self, *, cancel: bool) -> None:
        """Finish (or with ``cancel``, fail) all work, then stop every worker."""
        self.closing = True
        self._fail_room_waiters()
        if cancel:
            self._failing_all = EngineClosed("the engine was closed before the task finished")
            self._fail_queued(self._failing_all)
            for slot in self.slots:
                for batch in slot.in_flight:
                    batch.kill_reason = "close"
                slot.kill()
        await self._idle.wait()
        while self._restarts:
            await asyncio.gather(*self._restarts, return_exceptions=True)
        await asyncio.gather(*(slot.stop() for slot in self.slots))

    # Submission

    def must_wait_for_room(self) -> bool:
        return self.closing or (self.max_queued is not None and self.queued >= self.max_queued)

    async def reserve(self, block: bool) -> None:
        """Wait until the queue has room for one more task (or raise Overloaded)."""
        while self.max_queued is not None and self.queued >= self.max_queued:
            if not block:
                raise Overloaded(self.queued, self.max_queued)
            waiter = self._loop.create_future()
            self._room_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._room_waiters:
                    self._room_waiters.remove(waiter)
        if self.closing:
            raise EngineClosed("the engine is closing")

    def submit(self, task: Task) -> None:
        if self._failing_all is not None:
            raise self._failing_all
        self.queue.append(task)
        self.queued += 1
        self.counters.submitted += 1
        self._idle.clear()
        self.dispatch()

    def cancel(self, task: Task) -> None:
        """Withdraw a task whose caller stopped waiting for it."""
        if task.state is TaskState.QUEUED:
            task.state = TaskState.CANCELLED
            self.queued -= 1
            self.counters.cancelled += 1
            self._wake_room_waiters()
            self._check_idle()
        elif task.state is TaskState.DISPATCHED and task.batch is not None:
            task.state = TaskState.CANCELLED
            self.counters.cancelled += 1
            self._withdraw_dispatched(task, task.batch)

    def _withdraw_dispatched(self, task: Task, batch: Batch) -> None:
        area = batch.slot.area
        if area is None or batch.settled:
            return
        finished, running = area.progress(batch.parity)
        first = batch.call_offset(task)
        for index in range(max(first, finished), first + task.n_calls):
            if index == running and not task.is_chunk:
                # It is running now: the only way to stop it is to stop its process.
                # (A chunk's calls are tiny by construction: the running one may finish.)
                batch.kill_reason = batch.kill_reason or "cancel"
                batch.slot.kill()
            elif index != running:
                area.skip(batch.parity, index)

    # Dispatch

    def dispatch(self) -> None:
        """Send queued tasks to workers that can take them."""
        if not any(len(slot.in_flight) < PIPELINE_DEPTH and slot.alive for slot in self.slots):
            return
        while self.queued:
            head = self._head()
            estimate_s = self.times.estimate(head.fn_key)
            short = head.timeout_s is None and _batching.is_short(estimate_s)
            slot = self._pick_slot(short)
            if slot is None:
                return
            self._send(slot, self._take_batch(slot, head, estimate_s))

    def _head(self) -> Task:
        while self.queue[0].state is not TaskState.QUEUED:
            self.queue.popleft()
        return self.queue[0]

    def _pick_slot(self, short: bool) -> Slot | None:
        best: Slot | None = None
        for slot in self.slots:
            if self._quota_left(slot) == 0:
                continue
            if slot.idle:
                if best is None or not best.idle or slot.busy_s < best.busy_s:
                    best = slot
            elif (
                best is None
                and short
                and slot.can_take(pipelined=True)
                and all(batch.short for batch in slot.in_flight)
            ):
                best = slot
        return best

    def _take_batch(self, slot: Slot, head: Task, estimate_s: float | None) -> list[Task]:
        self.queue.popleft()
        tasks = [head]
        if head.timeout_s is not None or not _batching.is_batchable(estimate_s):
            return tasks
        assert estimate_s is not None
        limit = min(_batching.batch_limit(estimate_s), MAX_BATCH)
        quota = self._quota_left(slot)
        if quota is not None:
            limit = min(limit, quota)
        calls = head.n_calls
        queue = self.queue
        while queue:
            task = queue[0]
            if task.state is not TaskState.QUEUED:
                queue.popleft()
                continue
            if (
                task.timeout_s is not None
                or task.fn_key != head.fn_key
                or calls + task.n_calls > limit
            ):
                break
            tasks.append(queue.popleft())
            calls += task.n_calls
        return tasks

    def _quota_left(self, slot: Slot) -> int | None:
        """Tasks the slot's current process may still be given (max_tasks_per_child)."""
        if self.max_tasks_per_child is None:
            return None
        held = sum(task.n_calls for batch in slot.in_flight for task in batch.tasks)
        return max(0, self.max_tasks_per_child - slot.tasks_since_start - held)

    def _send(self, slot: Slot, tasks: list[Task]) -> None:
        batch = Batch(slot, slot.next_parity, tasks, self._loop.time())
        estimate_s = self.times.estimate(tasks[0].fn_key)
        batch.short = tasks[0].timeout_s is None and _batching.is_short(estimate_s)
        for task in tasks:
            task.state = TaskState.DISPATCHED
            task.batch = batch
            task.attempts += 1
        self.queued -= len(tasks)
        try:
            future = slot.submit(batch)
        except (BrokenProcessPool, RuntimeError) as exc:
            # The worker died between its last result and this batch.
            if batch in slot.in_flight:
                slot.in_flight.remove(batch)
            self._requeue(tasks)
            self._worker_lost(slot, exc)
            return
        self.counters.round_trips += 1
        future.add_done_callback(lambda done: self._settle(batch, done))
        timeout_s = tasks[0].timeout_s
        if timeout_s is not None:
            batch.timer = self._loop.call_later(timeout_s, self._expire, batch)
        self._wake_room_waiters()

    def _expire(self, batch: Batch) -> None:
        if not batch.settled:
            batch.kill_reason = "timeout"
            batch.slot.kill()

    # Results

    def _settle(self, batch: Batch, future: asyncio.Future[list[Outcome]]) -> None:
        batch.settled = True
        if batch.timer is not None:
            batch.timer.cancel()
        slot = batch.slot
        slot.in_flight.remove(batch)
        error = future.exception()
        if error is None:
            outcomes = future.result()
            self._apportion(batch, outcomes, running_unfinished=False)
            self._after_success(slot, len(outcomes))
        else:
            # The worker died: what it finished is in the area, one record per call.
            area = slot.area
            assert area is not None
            finished, running = area.progress(batch.parity)
            names = (task.name for task in batch.tasks for _ in range(task.n_calls))
            outcomes = [
                read_record(record, name)
                for record, name in zip(area.records(batch.parity), names, strict=False)
            ]
            self._apportion(batch, outcomes, running_unfinished=running == finished)
            self._worker_lost(slot, error)
        self._check_idle()
        self.dispatch()

    def _apportion(self, batch: Batch, outcomes: list[Outcome], running_unfinished: bool) -> None:
        """Settle the batch's first calls from their outcomes, blame the call that was
        running when the worker died (if one was), and requeue every call left over."""
        position = 0
        leftovers = []
        for task in batch.tasks:
            taken = outcomes[position : position + task.n_calls]
            position += len(taken)
            self._settle_calls(task, taken)
            if task.n_calls and running_unfinished:
                running_unfinished = False
                self._blame(task, batch)
            if task.n_calls and task.state is TaskState.DISPATCHED:
                leftovers.append(task)
        self._requeue(leftovers)

    def _settle_calls(self, task: Task, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        if len(outcomes) == 1 and outcomes[0] is not None:
            self._count_one(task, outcomes[0])
            self._record_outcomes(task, outcomes)
            return
        ran = [outcome for outcome in outcomes if outcome is not None]
        if ran:
            elapsed = [outcome[1] for outcome in ran]
            total_s = sum(elapsed)
            succeeded = sum(1 for outcome in ran if outcome[0])
            counters = self.counters
            counters.durations_s.extend(elapsed)
            counters.completed += succeeded
            counters.failed += len(ran) - succeeded
            self.times.observe(task.fn_key, total_s / len(ran))
            if task.batch is not None:
                task.batch.slot.busy_s += total_s
                task.batch.slot.tasks_done += len(ran)
        self._record_outcomes(task, outcomes)

    def _count_one(self, task: Task, outcome: tuple[bool, float, Any]) -> None:
        ok, elapsed_s, _ = outcome
        counters = self.counters
        counters.durations_s.append(elapsed_s)
        if ok:
            counters.completed += 1
        else:
            counters.failed += 1
        self.times.observe(task.fn_key, elapsed_s)
        if task.batch is not None:
            task.batch.slot.busy_s += elapsed_s
            task.batch.slot.tasks_done += 1

    def _record_outcomes(self, task: Task, outcomes: list[Outcome]) -> None:
        """Hand settled calls to whoever waits for them."""
        if task.outcomes is not None:
            task.outcomes[task.first : task.first + len(outcomes)] = outcomes
            task.advance(len(outcomes))
            if task.n_calls == 0:
                self._finish(task)
            return
        task.advance(len(outcomes))
        outcome = outcomes[0]
        cancelled = task.state is TaskState.CANCELLED
        task.state = TaskState.FINISHED
        if outcome is None or cancelled:
            return
        if outcome[0]:
            task.future.set_result(outcome[2])
        else:
            task.future.set_exception(rebuild_error(outcome[2], task.name))

    def _finish(self, task: Task) -> None:
        cancelled = task.state is TaskState.CANCELLED
        task.state = TaskState.FINISHED
        if not cancelled and not task.future.done():
            task.future.set_result(task.outcomes)

    def _blame(self, task: Task, batch: Batch) -> None:
        """Decide the fate of the call that was running when its worker died."""
        error = self._death_error(task, batch)
        if error is None:
            return
        if task.is_chunk:
            self._record_outcomes(task, [failed(error)])
        else:
            self._fail(task, error)

    def _death_error(self, task: Task, batch: Batch) -> BaseException | None:
        if task.state is TaskState.CANCELLED:
            task.state = TaskState.FINISHED
            return None
        if batch.kill_reason == "timeout":
            self.counters.timed_out += 1
            assert task.timeout_s is not None
            return TaskTimeout(task.name, task.timeout_s)
        if batch.kill_reason == "close":
            return EngineClosed("the engine was closed while the task ran")
        if task.retries_left > 0 and not self.closing and not task.is_chunk:
            task.retries_left -= 1
            return None
        self.counters.crashed += 1
        slot = batch.slot
        return WorkerCrashed(task.name, slot.exitcode(), slot.pid, task.attempts)

    def _fail(self, task: Task, error: BaseException) -> None:
        task.state = TaskState.FINISHED
        if not task.future.done():
            task.future.set_exception(error)

    def _requeue(self, tasks: list[Task]) -> None:
        """Put tasks (or what is left of them) back at the head of the queue, in order."""
        waiting = [task for task in tasks if task.state is TaskState.DISPATCHED]
        if self._failing_all is not None:
            for task in waiting:
                self._fail(task, self._failing_all)
            return
        for task in reversed(waiting):
            task.state = TaskState.QUEUED
            task.batch = None
            self.queue.appendleft(task)
        self.queued += len(waiting)

    # Worker replacement

    def _after_success(self, slot: Slot, finished: int) -> None:
        slot.tasks_since_start += finished
        limit = self.max_tasks_per_child
        if limit is not None and slot.tasks_since_start >= limit:
            slot.retiring = True
        if slot.retiring and not slot.in_flight:
            self._replace(slot)

    def _worker_lost(self, slot: Slot, error: BaseException) -> None:
        if slot.alive:
            logger.debug("worker %s (pid %s) lost: %r", slot.index, slot.pid, error)
        slot.mark_dead()
        if not slot.in_flight:
            self._replace(slot)

    def _replace(self, slot: Slot) -> None:
        slot.alive = False
        self.counters.worker_restarts += 1
        task = self._loop.create_task(self._restart(slot), name=f"hybrid-restart-{slot.index}")
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, slot: Slot) -> None:
        await slot.stop()
        if self._failing_all is not None:
            return
        delay_s = RESTART_BACKOFF_S
        last_error: HybridError = WorkerStartError(f"worker {slot.index} could not be replaced")
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            try:
                await slot.start()
            except WorkerStartError as exc:
                logger.warning("worker %s failed to restart (try %s): %s", slot.index, attempt, exc)
                last_error = exc
                await asyncio.sleep(delay_s)
                delay_s *= 2
            else:
                self.dispatch()
                return
        if not any(other.alive for other in self.slots):
            self._failing_all = last_error
            self._fail_queued(last_error)
            self._check_idle()

    # Bookkeeping

    def _fail_queued(self, error: BaseException) -> None:
        while self.queue:
            task = self.queue.popleft()
            if task.state is TaskState.QUEUED:
                self._fail(task, error)
        self.queued = 0

    def _check_idle(self) -> None:
        if self.queued == 0 and not any(slot.in_flight for slot in self.slots):
            self._idle.set()

    def _wake_room_waiters(self) -> None:
        if self.max_queued is None:
            return
        room = self.max_queued - self.queued
        while room > 0 and self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def _fail_room_waiters(self) -> None:
        while self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def stats(self) -> EngineStats:
        counters = self.counters
        durations = sorted(counters.durations_s)
        workers = tuple(
            WorkerStats(
                index=slot.index,
                pid=slot.pid,
                alive=slot.alive,
                busy=bool(slot.in_flight),
                tasks=slot.tasks_done,
                busy_s=slot.busy_s,
                starts=slot.starts,
            )
            for slot in self.slots
        )
        return EngineStats(
            workers=sum(1 for slot in self.slots if slot.alive),
            busy=sum(1 for slot in self.slots if slot.in_flight),
            queued=self.queued,
            submitted=counters.submitted,
            completed=counters.completed,
            failed=counters.failed,
            crashed=counters.crashed,
            timed_out=counters.timed_out,
            cancelled=counters.cancelled,
            worker_restarts=counters.worker_restarts,
            round_trips=counters.round_trips,
            task_p50_s=percentile(durations, 0.50),
            task_p95_s=percentile(durations, 0.95),
            task_p99_s=percentile(durations, 0.99),
            per_worker=workers,
        )
