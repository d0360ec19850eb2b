"""A pool of worker slots fed from its queues: intake, and the glue of dispatch and settling.

Which slot gets which tasks is decided in :mod:`.dispatch`; starting, replacing and
removing processes is the :class:`~.supervisor.Supervisor`'s job.
"""

from __future__ import annotations

import asyncio
import multiprocessing.context
from collections import deque
from collections.abc import Hashable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .._errors import EngineClosed, HybridError, Overloaded
from ..observers import TaskObserver, tell
from . import batching as _batching
from .dispatch import PIPELINE_DEPTH, QueueView, Recycle, Send, decide
from .queues import WorkQueues
from .room import RoomWaiters
from .settling import Settler, hit_memory_limit
from .slot import Slot
from .spec import PoolSpec
from .stats import Counters, EngineStats, pool_stats
from .supervisor import Supervisor
from .task import Batch, Task, TaskState
from .watch import check_memory, watch
from .worker import BatchReport

RSS_CHECK_MIN_GAP_S = 0.01  # least time between two reads of one worker's memory


class Pool:
    """Worker slots and the queues that feed them."""

    def __init__(
        self,
        name: str,
        spec: PoolSpec,
        size: int,
        context: multiprocessing.context.BaseContext,
        log_to: tuple[Any, int] | None = None,
        observers: list[TaskObserver] | None = None,
    ) -> None:
        self.name = name
        self.observers = observers if observers is not None else []  # the engine's, shared
        self.spec = spec
        self.max_tasks_per_child = spec.max_tasks_per_child
        self.max_queued = spec.max_queued
        self.slots: list[Slot] = []
        self.queues = WorkQueues()
        self.counters = Counters()
        self.times = _batching.TaskTimes()
        self.closing = False
        self.paused_because: str | None = None
        self.rss_limit_by_policy = False  # an autoscaler checks max_rss_bytes instead of the watch
        self.memory_kill_limit_bytes = 0  # memory level past which workers get killed (stats)
        self._failing_all: BaseException | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        self._room_waiters = RoomWaiters(self._loop)
        self._watcher: asyncio.Task[None] | None = None
        self._settler = Settler(
            self.counters,
            self.times,
            self._requeue,
            lambda: self.closing,
            spec.memory_limit_bytes,
            lambda: self.memory_kill_limit_bytes,
        )
        self.supervisor = Supervisor(
            self.slots,
            self.queues,
            spec,
            context,
            log_to,
            self.counters,
            self._settler.report_crashes,
            self.dispatch,
            lambda: self._failing_all is not None,
            self._give_up,
        )
        for _ in range(size):
            self.supervisor.new_slot()

    @property
    def queued(self) -> int:
        return self.queues.count

    # Life cycle

    async def start(self) -> None:
        await self.supervisor.start()
        self._watcher = self._loop.create_task(watch(self), name=f"hybrid-watch-{self.name}")

    async def close(self, *, cancel: bool) -> None:
        """Finish (or with ``cancel``, fail) all work, then stop every worker."""
        self.closing = True
        self.paused_because = None
        self._room_waiters.wake_all()
        if cancel:
            self._failing_all = EngineClosed("the engine was closed before the task finished")
            self._fail_queued(self._failing_all)
            for slot in self.slots:
                for batch in slot.in_flight:
                    batch.kill_reason = "close"
                slot.kill()
        self.dispatch()
        await self._idle.wait()
        await self.supervisor.join()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self.supervisor.stop()

    # Submission

    def must_wait_for_room(self) -> bool:
        return self.closing or self._full()

    def _full(self) -> bool:
        if self.paused_because is not None:
            return True
        return self.max_queued is not None and self.queued >= self.max_queued

    async def reserve(self, block: bool) -> None:
        """Wait until the pool takes one more task (or raise Overloaded): the queue has
        room and intake is not paused for memory."""
        while self._full() and not self.closing:
            if not block:
                raise Overloaded(self.queued, self.max_queued, self.paused_because)
            await self._room_waiters.wait()
        if self.closing:
            raise EngineClosed("the engine is closing")

    def submit(self, task: Task) -> None:
        if self._failing_all is not None:
            raise self._failing_all
        self.queues.push(task, self.slots)
        self.counters.submitted += 1
        self._idle.clear()
        self.dispatch()

    def cancel(self, task: Task) -> None:
        """Withdraw a task whose caller stopped waiting for it."""
        if task.state is TaskState.QUEUED:
            task.state = TaskState.CANCELLED
            self.queues.count -= 1
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
            if index == running and (task.kill_on_cancel or not task.is_chunk):
                # It is running now: the only way to stop it is to stop its process.
                # (A map chunk's calls are tiny by construction: the running one may finish.)
                batch.kill_reason = batch.kill_reason or "cancel"
                batch.slot.kill()
            elif index != running:
                area.skip(batch.parity, index)

    # Dispatch

    def pause(self, reason: str) -> None:
        """Stop handing work to workers (callers queue up) until :meth:`resume`."""
        self.paused_because = reason

    def resume(self) -> None:
        self.paused_because = None
        self.dispatch()
        self._wake_room_waiters()

    def dispatch(self) -> None:
        """Send queued tasks, oldest first, to workers that can take them."""
        if self.paused_because is not None:
            return
        # The common case on a busy pool, checked before any snapshot is made.
        if not any(len(slot.in_flight) < PIPELINE_DEPTH and slot.alive for slot in self.slots):
            return
        estimate = self.times.estimate
        count_held = self.max_tasks_per_child is not None
        while self.queues.count:
            heads = list(self.queues.heads())
            decisions = decide(
                [slot.view(estimate, count_held) for slot in self.slots],
                [
                    QueueView(queue, None if bound is None else bound.index)
                    for queue, bound in heads
                ],
                estimate,
                queued=self.queues.count,
                max_tasks_per_child=self.max_tasks_per_child,
            )
            if not self._carry_out(decisions, heads):
                return

    def _carry_out(
        self, decisions: list[Send[Task] | Recycle], heads: list[tuple[deque[Task], Slot | None]]
    ) -> bool:
        """Recycle and send as the policy decided; whether a batch was sent."""
        sent = False
        for decision in decisions:
            if isinstance(decision, Send):
                tasks = _take(heads[decision.queue][0], decision.tasks)
                self._send(self._slot(decision.slot), tasks)
                sent = True
            else:
                self.recycle(self._slot(decision.slot))
        return sent

    def _slot(self, index: int) -> Slot:
        return next(slot for slot in self.slots if slot.index == index)

    def _send(self, slot: Slot, tasks: list[Task]) -> None:
        batch = Batch(slot, slot.next_parity, tasks, self._loop.time())
        batch.short = _batching.is_short(self.times.estimate(tasks[0].fn_key))
        for task in tasks:
            task.state = TaskState.DISPATCHED
            task.batch = batch
            task.attempts += 1
            task.worker_pid = slot.pid
        if self.observers:
            for task in tasks:
                tell(self.observers, "task_started", task.event())
        self.queues.count -= len(tasks)
        try:
            future = slot.submit(batch)
        except (BrokenProcessPool, RuntimeError) as exc:
            # The worker died between its last result and this batch.
            if batch in slot.in_flight:
                slot.in_flight.remove(batch)
            self._requeue(tasks)
            self.supervisor.worker_lost(slot, exc)
            return
        self.counters.round_trips += 1
        future.add_done_callback(lambda done: self._settle(batch, done))
        if len(slot.in_flight) == 1:
            self._start_timeout(batch)  # else when the batch ahead of it settles
        self._wake_room_waiters()

    def _start_timeout(self, batch: Batch) -> None:
        """Arm a batch's timeout as it starts to run (not while it waits behind another)."""
        timeout_s = batch.tasks[0].timeout_s if batch.tasks else None
        if timeout_s is not None and batch.timer is None and not batch.settled:
            batch.timer = self._loop.call_later(timeout_s, self._expire, batch)

    def _expire(self, batch: Batch) -> None:
        if not batch.settled:
            batch.kill_reason = "timeout"
            batch.slot.kill()

    def kill_for_memory(self, slot: Slot) -> None:
        """Kill a worker to save the machine's memory; its running call runs again."""
        self.supervisor.kill(slot, "memory")

    def kill_hung(self, slot: Slot) -> None:
        """Kill a worker that stopped responding; its running call fails as crashed."""
        self.supervisor.kill(slot, "hung")

    def recycle(self, slot: Slot) -> None:
        """Replace a worker once its current batch is done (e.g. its memory grew too much)."""
        self.supervisor.recycle(slot)

    async def resize(self, size: int) -> None:
        """Grow or shrink to ``size`` workers; no queued or running call is lost or repeated."""
        await self.supervisor.resize(size)

    # Results

    def _settle(self, batch: Batch, future: asyncio.Future[BatchReport]) -> None:
        batch.settled = True
        if batch.timer is not None:
            batch.timer.cancel()
        slot = batch.slot
        slot.in_flight.remove(batch)
        if slot.in_flight:
            self._start_timeout(slot.in_flight[0])
        error = future.exception()
        if error is None:
            report = future.result()
            self._settler.settle_returned(batch, report)
            values, problems, _ = report
            if self.spec.memory_limit_bytes is not None and hit_memory_limit(problems):
                # A worker that ran out of address space may be left fragmented or broken.
                slot.retire()
            self._after_success(slot, len(values))
        else:
            self._settler.settle_dead(batch)
            self.supervisor.worker_lost(slot, error)
        self._forget(batch, self._loop.time())
        self._check_idle()
        self.dispatch()

    @staticmethod
    def _forget(batch: Batch, now: float) -> None:
        # Tasks and their batch point at each other; break the cycle now so a finished
        # task's pickled arguments are freed at once, not at the next cyclic collection.
        for task in batch.tasks:
            task.settled_at = now
            if task.state is TaskState.FINISHED:
                task.payload = b""
        batch.tasks = []

    def _requeue(self, tasks: list[Task]) -> None:
        """Put tasks (or what is left of them) back at the head of their queues, in order."""
        waiting = [task for task in tasks if task.state is TaskState.DISPATCHED]
        if self._failing_all is not None:
            for task in waiting:
                self._settler.fail(task, self._failing_all)
            return
        for task in waiting:
            task.state = TaskState.QUEUED
            task.batch = None
        self.queues.push_front(waiting, self.slots)

    def _after_success(self, slot: Slot, finished: int) -> None:
        slot.tasks_since_start += finished
        if self.spec.max_rss_bytes is not None and not self.rss_limit_by_policy:
            # Quick leaky calls can outgrow the limit between two looks of the watch,
            # so a worker's memory is also read as its batch comes back (rate-limited).
            now = self._loop.time()
            if now - slot.rss_checked_at >= RSS_CHECK_MIN_GAP_S:
                slot.rss_checked_at = now
                check_memory(self, slot)
        limit = self.max_tasks_per_child
        if limit is not None and slot.tasks_since_start >= limit:
            slot.retire()
        self.supervisor.release(slot)

    # Bookkeeping

    def _give_up(self, error: HybridError) -> None:
        """No worker could be started again: fail what waits, and all that comes."""
        self._failing_all = error
        self._fail_queued(error)
        self._check_idle()

    def _fail_queued(self, error: BaseException) -> None:
        for task in self.queues.drain():
            self._settler.fail(task, error)

    def _check_idle(self) -> None:
        if self.queued == 0 and not any(slot.in_flight for slot in self.slots):
            self._idle.set()

    def _wake_room_waiters(self) -> None:
        if self.paused_because is not None or not self._room_waiters:
            return
        room = len(self._room_waiters) if self.max_queued is None else self.max_queued - self.queued
        self._room_waiters.wake(room)

    def bound_worker(self, key: Hashable) -> int | None:
        """The index of the worker slot a key is bound to, if it is bound."""
        slot = self.queues.bound_slot(key)
        return None if slot is None else slot.index

    def stats(self) -> EngineStats:
        return pool_stats(self.slots, self.counters, self.queued, self.paused_because)


def _take(queue: deque[Task], tasks: list[Task]) -> list[Task]:
    """Pop a batch the policy chose off its queue, with the cancelled tasks among it."""
    last = tasks[-1]
    while queue.popleft() is not last:
        pass
    return tasks
