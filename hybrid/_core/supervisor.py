"""Keeping a pool's worker slots staffed: start, kill, replace with backoff, resize.

A slot that retires, dies or is chosen by a shrink keeps its batches until they settle;
then its process is replaced (or the slot removed). A replacement that fails to start is
tried again with backoff; if every slot is then dead, the pool gives up its queued work.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.context
from collections.abc import Callable, Coroutine
from typing import Any

from .._errors import HybridError, WorkerStartError
from ..isolation import spread_cpu
from ..machine import usable_cpu_ids
from .queues import WorkQueues
from .slot import RetiredProcess, Slot
from .slot_state import DONE_WHEN_EMPTY, SlotState, on_shrink
from .spec import PoolSpec, WorkerSettings
from .stats import Counters

logger = logging.getLogger("hybrid")

RESTART_ATTEMPTS = 3  # tries to replace a dead worker before the slot is given up
RESTART_BACKOFF_S = 0.1  # first pause between those tries; doubles each time


class Supervisor:
    """Starts, replaces and removes the processes of a pool's slots."""

    def __init__(
        self,
        slots: list[Slot],
        queues: WorkQueues,
        spec: PoolSpec,
        context: multiprocessing.context.BaseContext,
        log_to: tuple[Any, int] | None,
        counters: Counters,
        report_crashes: Callable[[Slot, int | None, int | None], None],
        dispatch: Callable[[], None],
        is_failing: Callable[[], bool],
        give_up: Callable[[HybridError], None],
    ) -> None:
        self._slots = slots
        self._queues = queues
        self._spec = spec
        self._context = context
        self._log_to = log_to
        self._counters = counters
        self._report_crashes = report_crashes
        self._dispatch = dispatch
        self._is_failing = is_failing
        self._give_up = give_up
        self._cpu_ids = usable_cpu_ids()
        self._background: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    def new_slot(self) -> Slot:
        index = max((slot.index for slot in self._slots), default=-1) + 1
        spec = self._spec
        cpu = spread_cpu(index, self._cpu_ids) if spec.pin_cpus else None
        settings = WorkerSettings(cpu, spec.memory_limit_bytes, spec.nice, self._log_to)
        slot = Slot(index, self._context, spec.initializer, spec.initargs, settings)
        slot.on_exit = self._worker_exited
        self._slots.append(slot)
        self._queues.add_slot(slot)
        return slot

    async def start(self) -> None:
        """Start every slot's first process; if one fails, stop them all and raise its error."""
        results = await asyncio.gather(
            *(slot.start() for slot in self._slots), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            await self.stop()
            raise errors[0]

    async def join(self) -> None:
        """Wait until no replacement or removal is under way."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def stop(self) -> None:
        await asyncio.gather(*(slot.stop() for slot in self._slots))

    def kill(self, slot: Slot, reason: str) -> None:
        """Kill a worker now; its batches settle with ``reason``, then it is replaced."""
        for batch in slot.in_flight:
            batch.kill_reason = batch.kill_reason or reason
        slot.kill()
        if not slot.in_flight:
            slot.mark_dead()
            self.release(slot)

    def recycle(self, slot: Slot) -> None:
        """Replace a worker once its current batch is done (e.g. its memory grew too much)."""
        slot.retire()
        self.release(slot)

    def worker_lost(self, slot: Slot, error: BaseException) -> None:
        if slot.alive:
            logger.debug("worker %s (pid %s) lost: %r", slot.index, slot.pid, error)
        slot.mark_dead()
        self.release(slot)

    def release(self, slot: Slot) -> None:
        """Replace or remove a slot its state condemns, once it holds no batch."""
        if not slot.in_flight and slot.state in DONE_WHEN_EMPTY:
            self._replace(slot)

    def _worker_exited(self, slot: Slot) -> None:
        """A worker's process ended. With work in flight, settling that work replaces it;
        an idle one is replaced now. An exit the pool asked for is not a loss."""
        if slot.in_flight or slot.state is not SlotState.SERVING:
            return
        logger.warning("worker %s (pid %s) died while idle; replacing it", slot.index, slot.pid)
        slot.mark_dead()
        self._replace(slot)

    def _replace(self, slot: Slot) -> None:
        # Several paths can ask for the same slot's replacement (a recycle decided while
        # its batch settles, a death seen twice): only the first finds it condemned.
        if slot.state not in DONE_WHEN_EMPTY:
            return
        if slot.going:
            slot.move_to(SlotState.LEAVING)
            self._in_background(self._remove(slot), f"hybrid-remove-{slot.index}")
            return
        slot.move_to(SlotState.REPLACING)
        self._counters.worker_restarts += 1
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
            if slot.state is SlotState.LEAVING:  # a shrink chose it while it was replaced
                await burial
                self._detach(slot)
            elif not self._is_failing():
                await self._start_again(slot)
        finally:
            await burial

    async def _bury(self, slot: Slot, retired: RetiredProcess) -> None:
        exitcode = await retired.close()
        self._report_crashes(slot, retired.pid, exitcode)

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
                self.release(slot)  # chosen by a shrink while it started: it goes now
                self._dispatch()
                return
        if not any(other.alive for other in self._slots):
            self._give_up(last_error)

    async def resize(self, size: int) -> None:
        """Grow or shrink to ``size`` workers; no queued or running call is lost or repeated."""
        live = [slot for slot in self._slots if not slot.going]
        if size > len(live):
            added = [self.new_slot() for _ in range(size - len(live))]
            await asyncio.gather(*(slot.start() for slot in added))
            self._dispatch()
        for slot in sorted(live, key=lambda s: (bool(s.in_flight), -s.index))[: len(live) - size]:
            slot.move_to(on_shrink(slot.state))
            self.release(slot)

    async def _remove(self, slot: Slot) -> None:
        await self._bury(slot, slot.detach())
        self._detach(slot)

    def _detach(self, slot: Slot) -> None:
        """Forget a removed slot; its waiting keyed tasks go to the others."""
        if slot in self._slots:
            self._slots.remove(slot)
            self._queues.remove_slot(slot, self._slots)
        self._dispatch()
