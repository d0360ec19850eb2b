"""A pool of worker slots fed from its queues: dispatch, batching, timeouts, restarts, resizing."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.context
from collections import deque
from collections.abc import Coroutine, Hashable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .._errors import EngineClosed, HybridError, Overloaded, WorkerStartError
from ..isolation import is_memory_limit_error, spread_cpu
from ..machine import usable_cpu_ids
from ..observers import TaskObserver, tell
from . import batching as _batching
from .area import MAX_BATCH
from .outcome import Outcome
from .queues import WorkQueues
from .settling import Settler
from .slot import PIPELINE_DEPTH, RetiredProcess, Slot
from .spec import PoolSpec, WorkerSettings
from .stats import Counters, EngineStats, WorkerStats, percentile
from .task import Batch, Task, TaskState
from .watch import check_memory, watch
from .worker import BatchReport

logger = logging.getLogger("hybrid")

PIPELINE_BEHIND_S = 0.25  # a task sent behind another on its worker waits at most about this

RESTART_ATTEMPTS = 3  # tries to replace a dead worker before the slot is given up
RESTART_BACKOFF_S = 0.1  # first pause between those tries; doubles each time
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
        self._log_to = log_to
        self.spec = spec
        self.max_tasks_per_child = spec.max_tasks_per_child
        self.max_queued = spec.max_queued
        self._context = context
        self._cpu_ids = usable_cpu_ids()
        self.slots: list[Slot] = []
        self.queues = WorkQueues()
        self.counters = Counters()
        self.times = _batching.TaskTimes()
        self.closing = False
        self.paused_because: str | None = None
        self.rss_limit_by_policy = False  # an autoscaler checks max_rss_bytes instead of the watch
        self.memory_kill_limit_bytes = 0  # memory level past which workers get killed (stats)
        self._failing_all: BaseException | None = None
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._background: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        self._watcher: asyncio.Task[None] | None = None
        self._settler = Settler(
            self.counters,
            self.times,
            self._requeue,
            lambda: self.closing,
            spec.memory_limit_bytes,
            lambda: self.memory_kill_limit_bytes,
        )
        for _ in range(size):
            self._new_slot()

    @property
    def queued(self) -> int:
        return self.queues.count

    # Life cycle

    async def start(self) -> None:
        results = await asyncio.gather(
            *(slot.start() for slot in self.slots), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            await asyncio.gather(*(slot.stop() for slot in self.slots))
            raise errors[0]
        self._watcher = self._loop.create_task(watch(self), name=f"hybrid-watch-{self.name}")

    async def close(self, *, cancel: bool) -> None:
        """Finish (or with ``cancel``, fail) all work, then stop every worker."""
        self.closing = True
        self.paused_because = None
        self._fail_room_waiters()
        if cancel:
            self._failing_all = EngineClosed("the engine was closed before the task finished")
            self._fail_queued(self._failing_all)
            for slot in self.slots:
                for batch in slot.in_flight:
                    batch.kill_reason = "close"
                slot.kill()
        self.dispatch()
        await self._idle.wait()
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await asyncio.gather(*(slot.stop() for slot in self.slots))

    def _new_slot(self) -> Slot:
        index = max((slot.index for slot in self.slots), default=-1) + 1
        spec = self.spec
        cpu = spread_cpu(index, self._cpu_ids) if spec.pin_cpus else None
        settings = WorkerSettings(cpu, spec.memory_limit_bytes, spec.nice, self._log_to)
        slot = Slot(index, self._context, spec.initializer, spec.initargs, settings)
        slot.on_exit = self._worker_exited
        self.slots.append(slot)
        self.queues.add_slot(slot)
        return slot

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
        if not any(len(slot.in_flight) < PIPELINE_DEPTH and slot.alive for slot in self.slots):
            return
        while self.queues.count:
            choice = self._oldest_dispatchable()
            if choice is None:
                return
            queue, slot = choice
            self._send(slot, self._take_batch(queue, slot))

    def _oldest_dispatchable(self) -> tuple[deque[Task], Slot] | None:
        best: tuple[deque[Task], Slot] | None = None
        best_at = 0.0
        for queue, bound in self.queues.heads():
            head = queue[0]
            if best is not None and head.submitted_at >= best_at:
                continue
            slot = self._pick_slot(head, bound)
            if slot is not None:
                best, best_at = (queue, slot), head.submitted_at
        return best

    def _is_short(self, task: Task) -> bool:
        # A timed task may wait behind another too: its timeout starts when that one ends.
        return _batching.is_short(self.times.estimate(task.fn_key))

    def _pick_slot(self, head: Task, bound: Slot | None) -> Slot | None:
        short = self._is_short(head)
        candidates = self.slots if bound is None else [bound]
        best: Slot | None = None
        for slot in candidates:
            if not self._may_take(slot, head):
                continue
            if slot.idle:
                if best is None or not best.idle or slot.busy_s < best.busy_s:
                    best = slot
            elif (
                best is None
                and slot.can_take(pipelined=True)
                and self._may_wait_behind(slot, short)
            ):
                best = slot
        return best

    def _may_wait_behind(self, slot: Slot, short: bool) -> bool:
        """Whether a task may be sent to ``slot`` to start when its current batch ends.

        Quick tasks may wait behind quick batches. Under saturation (at least as many
        tasks queued as there are workers) any task may wait behind a batch estimated
        under PIPELINE_BEHIND_S: it would wait about that long in the queue anyway, and
        its worker then starts it without a round trip through this process (as the
        stdlib executor keeps a call queued ahead).
        """
        if short and all(batch.short for batch in slot.in_flight):
            return True
        if self.queues.count < len(self.slots):
            return False
        for batch in slot.in_flight:
            if not batch.tasks:
                return False
            estimate_s = self.times.estimate(batch.tasks[0].fn_key)
            if estimate_s is None or estimate_s >= PIPELINE_BEHIND_S:
                return False
        return True

    def _take_batch(self, queue: deque[Task], slot: Slot) -> list[Task]:
        head = queue.popleft()
        tasks = [head]
        estimate_s = self.times.estimate(head.fn_key)
        if head.timeout_s is not None or estimate_s is None:
            return tasks
        if not _batching.is_batchable(estimate_s):
            return tasks
        limit = min(_batching.batch_limit(estimate_s), MAX_BATCH)
        quota = self._quota_left(slot)
        if quota is not None:
            limit = min(limit, quota)
        calls = head.n_calls
        while queue:
            task = queue[0]
            if task.state is not TaskState.QUEUED:
                queue.popleft()
                continue
            if task.timeout_s is not None or task.fn_key != head.fn_key:
                break
            if calls + task.n_calls > limit:
                break
            tasks.append(queue.popleft())
            calls += task.n_calls
        return tasks

    def _may_take(self, slot: Slot, head: Task) -> bool:
        """Whether the slot's process may run the task within max_tasks_per_child."""
        quota = self._quota_left(slot)
        if quota is None:
            return True
        if head.n_calls <= quota or quota == self.max_tasks_per_child:
            return quota > 0
        # A chunk larger than what this process may still run goes to a fresh process.
        if slot.idle:
            self.recycle(slot)
        return False

    def _quota_left(self, slot: Slot) -> int | None:
        """Calls the slot's current process may still be given (max_tasks_per_child)."""
        if self.max_tasks_per_child is None:
            return None
        held = sum(task.n_calls for batch in slot.in_flight for task in batch.tasks)
        return max(0, self.max_tasks_per_child - slot.tasks_since_start - held)

    def _send(self, slot: Slot, tasks: list[Task]) -> None:
        batch = Batch(slot, slot.next_parity, tasks, self._loop.time())
        batch.short = self._is_short(tasks[0])
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
            self._worker_lost(slot, exc)
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
        self.kill_with_reason(slot, "memory")

    def kill_hung(self, slot: Slot) -> None:
        """Kill a worker that stopped responding; its running call fails as crashed."""
        self.kill_with_reason(slot, "hung")

    def kill_with_reason(self, slot: Slot, reason: str) -> None:
        for batch in slot.in_flight:
            batch.kill_reason = batch.kill_reason or reason
        slot.kill()
        if not slot.in_flight:
            slot.mark_dead()
            self._replace(slot)

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
            if self.spec.memory_limit_bytes is not None and _hit_memory_limit(problems):
                # A worker that ran out of address space may be left fragmented or broken.
                slot.retiring = True
            self._after_success(slot, len(values))
        else:
            self._settler.settle_dead(batch)
            self._worker_lost(slot, error)
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

    # Worker replacement and resizing

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
            slot.retiring = True
        if (slot.retiring or slot.removing) and not slot.in_flight:
            self._replace(slot)

    def _worker_lost(self, slot: Slot, error: BaseException) -> None:
        if slot.alive:
            logger.debug("worker %s (pid %s) lost: %r", slot.index, slot.pid, error)
        slot.mark_dead()
        if not slot.in_flight:
            self._replace(slot)

    def _worker_exited(self, slot: Slot) -> None:
        """A worker's process ended. With work in flight, settling that work replaces it;
        an idle one is replaced now. An exit the pool asked for is not a loss."""
        if slot.in_flight or not slot.alive or slot.retiring or slot.removing:
            return
        logger.warning("worker %s (pid %s) died while idle; replacing it", slot.index, slot.pid)
        slot.mark_dead()
        self._replace(slot)

    def recycle(self, slot: Slot) -> None:
        """Replace a worker once its current batch is done (e.g. its memory grew too much)."""
        slot.retiring = True
        if not slot.in_flight and slot.alive:
            self._replace(slot)

    def _replace(self, slot: Slot) -> None:
        # Several paths can ask for the same slot's replacement (a recycle decided while
        # its batch settles, a death seen twice): only the first may act.
        if slot.replacing:
            return
        slot.replacing = True
        slot.alive = False
        if slot.removing:
            self._in_background(self._remove(slot), f"hybrid-remove-{slot.index}")
            return
        self.counters.worker_restarts += 1
        self._in_background(self._restart(slot), f"hybrid-restart-{slot.index}")

    def _in_background(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = self._loop.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _restart(self, slot: Slot) -> None:
        # The old process is joined while its replacement starts: the crash report waits
        # for the old one's exit code, the replacement does not.
        burial = self._loop.create_task(self._bury(slot, slot.detach()))
        try:
            if slot.removing:  # a shrink chose this slot while it was being replaced
                await burial
                self._detach(slot)
            elif self._failing_all is None:
                await self._start_again(slot)
        finally:
            await burial

    async def _bury(self, slot: Slot, retired: RetiredProcess) -> None:
        exitcode = await retired.close()
        self._settler.report_crashes(slot, retired.pid, exitcode)

    async def _start_again(self, slot: Slot) -> None:
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
                if slot.is_leaving():
                    self._replace(slot)  # chosen by a shrink while it started: it goes now
                self.dispatch()
                return
        if not any(other.alive for other in self.slots):
            self._failing_all = last_error
            self._fail_queued(last_error)
            self._check_idle()

    async def resize(self, size: int) -> None:
        """Grow or shrink to ``size`` workers; no queued or running call is lost or repeated."""
        live = [slot for slot in self.slots if not slot.removing]
        if size > len(live):
            added = [self._new_slot() for _ in range(size - len(live))]
            await asyncio.gather(*(slot.start() for slot in added))
            self.dispatch()
        for slot in sorted(live, key=lambda s: (bool(s.in_flight), -s.index))[: len(live) - size]:
            slot.removing = True
            if not slot.in_flight:
                self._replace(slot)

    async def _remove(self, slot: Slot) -> None:
        await self._bury(slot, slot.detach())
        self._detach(slot)

    def _detach(self, slot: Slot) -> None:
        """Forget a removed slot; its waiting keyed tasks go to the others."""
        if slot in self.slots:
            self.slots.remove(slot)
            self.queues.remove_slot(slot, self.slots)
        self.dispatch()

    # Bookkeeping

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

    def bound_worker(self, key: Hashable) -> int | None:
        """The index of the worker slot a key is bound to, if it is bound."""
        slot = self.queues.bound_slot(key)
        return None if slot is None else slot.index

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
                liveness=slot.liveness.state if slot.liveness else "alive",
                heartbeat_interval_s=(
                    slot.liveness.detector.heartbeat_interval() if slot.liveness else None
                ),
                heartbeats=slot.liveness.beats_seen if slot.liveness else 0,
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
            recycled_for_memory=counters.recycled_for_memory,
            hung_workers_killed=counters.hung,
            task_p50_s=percentile(durations, 0.50),
            task_p95_s=percentile(durations, 0.95),
            task_p99_s=percentile(durations, 0.99),
            per_worker=workers,
            paused_because=self.paused_because,
        )


def _hit_memory_limit(problems: dict[int, Outcome]) -> bool:
    return any(
        outcome is not None
        and not outcome[0]
        and isinstance(outcome[2], tuple)
        and is_memory_limit_error(str(outcome[2][1]))
        for outcome in problems.values()
    )
