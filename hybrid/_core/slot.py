"""One worker slot: a single-process ``ProcessPoolExecutor`` and its result area.

A stdlib pool breaks as a whole when one of its processes dies and cannot stop a
running call. With one process per executor, a death breaks only that executor,
and the slot knows its process, so it can kill it on a timeout or a cancellation
and start a fresh one in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.context
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from .._errors import WorkerStartError
from . import pickling, worker as _worker
from .area import ResultArea
from .dispatch import Estimate, InFlight, SlotView
from .liveness import WorkerLiveness
from .slot_state import ALIVE, GOING, SlotState, check_move, on_death
from .spec import WorkerSettings
from .task import Batch
from .worker_profile import take_stats as take_profile_stats


class Slot:
    """A place for one worker process; the process is replaced, the slot stays."""

    def __init__(
        self,
        index: int,
        context: multiprocessing.context.BaseContext,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        settings: WorkerSettings,
    ) -> None:
        self.index = index
        self._settings = settings
        self._context = context
        # Pickled by value once if workers cannot import it (e.g. it lives in __main__).
        self._initializer = None if initializer is None else pickling.as_sendable(initializer)
        self._initargs = initargs
        self._executor: ProcessPoolExecutor | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.area: ResultArea | None = None
        self.pid: int | None = None
        self.in_flight: list[Batch] = []
        self.next_parity = 0
        self.state = SlotState.STARTING  # changed only by move_to()
        self.on_exit: Callable[[Slot], None] | None = None  # called when the process ends
        self.rss_checked_at = 0.0  # loop time of the last read of its memory
        self.liveness: WorkerLiveness | None = None  # heartbeat judgement, kept by the watch
        self._sentinel: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tasks_since_start = 0
        self.profile = False  # send batches to run under the worker's profiler
        self.starts = 0
        self.busy_s = 0.0
        self.tasks_done = 0

    @property
    def alive(self) -> bool:
        """Whether its process runs (as far as the pool knows)."""
        return self.state in ALIVE

    @property
    def going(self) -> bool:
        """Whether a shrink has chosen this slot (it may change while the slot starts)."""
        return self.state in GOING

    def view(self, estimate: Estimate, count_held: bool) -> SlotView:
        """A snapshot for the dispatch policy; ``count_held`` sums the calls it holds."""
        in_flight = self.in_flight
        if not in_flight:
            return SlotView(self.index, self.state, (), self.busy_s, self.tasks_since_start, 0)
        return SlotView(
            self.index,
            self.state,
            tuple(
                InFlight(batch.short, estimate(batch.tasks[0].fn_key) if batch.tasks else None)
                for batch in in_flight
            ),
            self.busy_s,
            self.tasks_since_start,
            sum(task.n_calls for batch in in_flight for task in batch.tasks) if count_held else 0,
        )

    def move_to(self, state: SlotState) -> None:
        """Change state; raises ForbiddenTransition on a move the table does not allow."""
        self.state = check_move(self.state, state)

    def retire(self) -> None:
        """Have a serving slot's process replaced once its batches settle."""
        if self.state is SlotState.SERVING:
            self.move_to(SlotState.RETIRING)

    async def start(self) -> None:
        """Start a worker process and wait until it is ready to serve."""
        area = ResultArea.create()
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._context,
            initializer=_worker.init_worker,
            initargs=(area.path, os.getpid(), self._settings, self._initializer, self._initargs),
        )
        loop = asyncio.get_running_loop()
        try:
            pid = await loop.run_in_executor(executor, _worker.hello)
        except BaseException as exc:
            area.unlink()
            area.close()
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
            if isinstance(exc, Exception):
                raise WorkerStartError(_explain_start_failure(self.index, exc)) from exc
            raise
        finally:
            # The worker has mapped the area (or never will): the name is no longer needed,
            # and nothing is left in /dev/shm even if this process is killed later.
            area.unlink()
        self._executor = executor
        self._process = _find_process(executor, pid)
        self.area = area
        self.pid = pid
        self.next_parity = 0
        self.tasks_since_start = 0
        self.starts += 1
        # A shrink that chose the slot while it started still holds: it serves nothing.
        if self.state is SlotState.LEAVING:
            self.move_to(SlotState.REMOVING)
        elif self.state is not SlotState.REMOVING:
            self.move_to(SlotState.SERVING)
        self._watch_exit(loop)

    def submit(self, batch: Batch) -> asyncio.Future[_worker.BatchReport]:
        """Send a batch to the worker; the future fails with BrokenProcessPool if it dies."""
        assert self._executor is not None
        assert self.area is not None
        self.area.reset(batch.parity)
        payloads = [task.payload for task in batch.tasks]
        counts = [task.n_calls for task in batch.tasks]
        first_ids = [task.id + task.first for task in batch.tasks]
        loop = asyncio.get_running_loop()
        self.in_flight.append(batch)
        self.next_parity ^= 1
        if self.profile:
            return loop.run_in_executor(
                self._executor, _worker.run_batch, batch.parity, payloads, counts, first_ids, True
            )
        return loop.run_in_executor(
            self._executor, _worker.run_batch, batch.parity, payloads, counts, first_ids
        )

    async def take_profile(self) -> dict[Any, Any]:
        """The worker's profile data (after the batches sent before this), or {} if it died."""
        if self._executor is None or not self.alive:
            return {}
        try:
            stats: dict[Any, Any] = await asyncio.get_running_loop().run_in_executor(
                self._executor, take_profile_stats
            )
        except Exception:  # the worker died or was replaced: its profile went with it
            return {}
        return stats

    def kill(self) -> None:
        """Kill the worker process at once (SIGKILL); the slot takes no work until replaced."""
        if self.pid is not None and self.alive:
            self.move_to(on_death(self.state))
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def mark_dead(self) -> None:
        """Record that its process is gone (a no-op for a slot already past its process)."""
        if self.alive:
            self.move_to(on_death(self.state))
        self._unwatch_exit()

    def _watch_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        # The process sentinel turns readable the moment the process ends: a worker that
        # dies while idle (the OOM killer, a stray SIGKILL) is seen at once, not at the
        # next batch sent to it.
        assert self._process is not None
        self._sentinel = self._process.sentinel
        self._loop = loop
        loop.add_reader(self._sentinel, self._exited)

    def _unwatch_exit(self) -> None:
        if self._sentinel is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sentinel)
        self._sentinel = None

    def _exited(self) -> None:
        self._unwatch_exit()
        if self.on_exit is not None:
            self.on_exit(self)

    async def stop(self) -> None:
        """Shut the executor down and join its process; the area is unmapped."""
        self.move_to(SlotState.STOPPED)
        await self.detach().close()

    def detach(self) -> RetiredProcess:
        """Take the current process off the slot, so a new one can start while it is joined."""
        retired = RetiredProcess(self._executor, self._process, self.area, self.pid)
        self._executor, self._process, self.area = None, None, None
        self._unwatch_exit()
        return retired


@dataclass
class RetiredProcess:
    """A slot's former process, its executor and its area, until they are shut down."""

    executor: ProcessPoolExecutor | None
    process: multiprocessing.process.BaseProcess | None
    area: ResultArea | None
    pid: int | None

    async def close(self) -> int | None:
        """Shut the executor down, join the process and unmap the area; the exit code."""
        if self.executor is not None:
            await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)
        if self.process is not None:
            await asyncio.to_thread(self.process.join)
        if self.area is not None:
            self.area.close()
        return None if self.process is None else self.process.exitcode


def _find_process(executor: ProcessPoolExecutor, pid: int) -> multiprocessing.process.BaseProcess:
    # The executor keeps its processes by pid; with one process there is exactly one.
    process: multiprocessing.process.BaseProcess = executor._processes[pid]
    return process


def _explain_start_failure(index: int, exc: Exception) -> str:
    if "bootstrapping phase" in str(exc):
        # spawn and forkserver import the main module again in each worker.
        return (
            f"worker {index} could not start: the main module starts an engine when it is "
            'imported. Put the program\'s entry point under `if __name__ == "__main__":` '
            "(spawn and forkserver workers import the main module)."
        )
    return f"worker {index} failed to start: {exc!r}"
