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
from ._errors import (
    EngineClosed,
    HybridError,
    Overloaded,
    TaskTimeout,
    WorkerCrashed,
    WorkerStartError,
)
from ._outcome import decode
from ._slot import Slot
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
        if task.index < finished:
            return
        if running == task.index:
            # It is running now: the only way to stop it is to stop its process.
            batch.kill_reason = batch.kill_reason or "cancel"
            batch.slot.kill()
        else:
            area.skip(batch.parity, task.index)

    # Dispatch

    def dispatch(self) -> None:
        """Send queued tasks to workers that can take them."""
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
        limit = _batching.batch_limit(estimate_s)
        quota = self._quota_left(slot)
        if quota is not None:
            limit = min(limit, quota)
        queue = self.queue
        while queue and len(tasks) < limit:
            task = queue[0]
            if task.state is not TaskState.QUEUED:
                queue.popleft()
                continue
            if task.timeout_s is not None or task.fn_key != head.fn_key:
                break
            tasks.append(queue.popleft())
        return tasks

    def _quota_left(self, slot: Slot) -> int | None:
        """Tasks the slot's current process may still be given (max_tasks_per_child)."""
        if self.max_tasks_per_child is None:
            return None
        held = sum(len(batch.tasks) for batch in slot.in_flight)
        return max(0, self.max_tasks_per_child - slot.tasks_since_start - held)

    def _send(self, slot: Slot, tasks: list[Task]) -> None:
        batch = Batch(slot, slot.next_parity, tasks, self._loop.time())
        estimate_s = self.times.estimate(tasks[0].fn_key)
        batch.short = tasks[0].timeout_s is None and _batching.is_short(estimate_s)
        for index, task in enumerate(tasks):
            task.state = TaskState.DISPATCHED
            task.batch = batch
            task.index = index
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

    def _settle(self, batch: Batch, future: asyncio.Future[tuple[int, bytes | None]]) -> None:
        batch.settled = True
        if batch.timer is not None:
            batch.timer.cancel()
        slot = batch.slot
        slot.in_flight.remove(batch)
        error = future.exception()
        if error is None:
            finished, tail = future.result()
            self._deliver_records(batch, batch.tasks[:finished])
            if tail is not None:
                self._deliver(batch.tasks[finished], tail)
                finished += 1
            self._requeue(batch.tasks[finished:])
            self._after_success(slot, finished)
        else:
            self._salvage(batch)
            self._worker_lost(slot, error)
        self._check_idle()
        self.dispatch()

    def _deliver_records(self, batch: Batch, tasks: list[Task]) -> None:
        area = batch.slot.area
        assert area is not None
        for task, record in zip(tasks, area.records(batch.parity), strict=False):
            self._deliver(task, record)

    def _deliver(self, task: Task, record: bytes) -> None:
        outcome = decode(record, task.name)
        if outcome is None:
            return
        slot = task.batch.slot if task.batch is not None else None
        if slot is not None:
            slot.busy_s += outcome.elapsed_s
            slot.tasks_done += 1
        self.times.observe(task.fn_key, outcome.elapsed_s)
        self.counters.durations_s.append(outcome.elapsed_s)
        if task.state is TaskState.CANCELLED:
            return
        task.state = TaskState.FINISHED
        if outcome.ok:
            self.counters.completed += 1
            task.future.set_result(outcome.value)
        else:
            self.counters.failed += 1
            assert outcome.error is not None
            task.future.set_exception(outcome.error)

    def _salvage(self, batch: Batch) -> None:
        """Sort out a batch whose worker died: keep the finished, blame one, requeue the rest."""
        area = batch.slot.area
        assert area is not None
        finished, running = area.progress(batch.parity)
        self._deliver_records(batch, batch.tasks[:finished])
        rest = batch.tasks[finished:]
        if rest and running == finished:
            self._blame(rest[0], batch)
            rest = rest[1:]
        self._requeue(rest)

    def _blame(self, task: Task, batch: Batch) -> None:
        """Decide the fate of the task that was running when its worker died."""
        if task.state is TaskState.CANCELLED:
            return
        if batch.kill_reason == "timeout":
            self.counters.timed_out += 1
            assert task.timeout_s is not None
            self._fail(task, TaskTimeout(task.name, task.timeout_s))
        elif batch.kill_reason == "close":
            self._fail(task, EngineClosed("the engine was closed while the task ran"))
        elif task.retries_left > 0 and not self.closing:
            task.retries_left -= 1
            self._requeue([task])
        else:
            self.counters.crashed += 1
            slot = batch.slot
            self._fail(task, WorkerCrashed(task.name, slot.exitcode(), slot.pid, task.attempts))

    def _fail(self, task: Task, error: BaseException) -> None:
        task.state = TaskState.FINISHED
        if not task.future.done():
            task.future.set_exception(error)

    def _requeue(self, tasks: list[Task]) -> None:
        """Put tasks that never ran back at the head of the queue, in order."""
        waiting = [task for task in tasks if task.state is not TaskState.CANCELLED]
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
                self.counters.worker_restarts += 1
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
