"""From accepted jobs to local engine tasks and back to per-job outcomes.

Tasks are looked up by name in an allow-list built from the modules the node was told to
import; a message never names an import path of its own. Calls without a time limit are
packed, across jobs, into chunks of the local engine so tiny jobs cost one round trip
per chunk, not per call.
"""

from __future__ import annotations

import importlib
import math
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import hybrid
from hybrid import BatchResults, EngineClosed, TaskHandle, TaskTimeout

from .codec import Job, describe_error, describe_outcome

MAX_CHUNK_CALLS = 512  # calls per local chunk: bounds the work lost to one crashed process
CHUNKS_PER_WORKER = 2  # enough chunks per batch to keep every local worker busy


def task_name(fn: Callable[..., Any]) -> str:
    """The name a function is sent under: ``module:qualname``."""
    return f"{fn.__module__}:{fn.__qualname__}"


def build_registry(module_names: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """Public module-level functions defined in the given modules, by :func:`task_name`."""
    registry: dict[str, Callable[..., Any]] = {}
    for module_name in module_names:
        module = importlib.import_module(module_name)
        for attribute, value in vars(module).items():
            if (
                isinstance(value, types.FunctionType)
                and value.__module__ == module.__name__
                and not attribute.startswith("_")
            ):
                registry[task_name(value)] = value
    return registry


@dataclass(eq=False)
class InFlight:
    """A job this node holds: its entry, its calls' outcomes so far, its lease renewal."""

    entry_id: bytes
    job: Job
    received_at_s: float
    outcomes: list[Any] = field(default_factory=list)
    remaining: int = 0
    renewed_at_s: float = 0.0
    lease_lost: bool = False
    store_refused: bool = False  # Redis refused its result once: it is being tried again

    def __post_init__(self) -> None:
        self.outcomes = [None] * len(self.job.calls)
        self.remaining = len(self.job.calls)
        self.renewed_at_s = self.received_at_s


Slot = tuple[InFlight, int]  # a job and the index of one of its calls


class Dispatcher:
    """Runs jobs' calls on the local engine and reports each job once all its calls settle."""

    def __init__(
        self,
        engine: hybrid.Engine,
        registry: dict[str, Callable[..., Any]],
        on_done: Callable[[InFlight], None],
        wall_ns: Callable[[], int] = time.time_ns,
        client_offset_ns: Callable[[Job], int] = lambda job: 0,
    ) -> None:
        self._engine = engine
        self._registry = registry
        self._on_done = on_done
        self._wall_ns = wall_ns
        self._client_offset_ns = client_offset_ns
        # engine task -> the calls it carries
        self._running: dict[TaskHandle[BatchResults[Any]], list[Slot]] = {}

    async def dispatch(self, jobs: list[InFlight]) -> None:
        """Submit the jobs' calls; expired deadlines settle at once without running."""
        packable: dict[str, list[Slot]] = {}
        now_ns = self._wall_ns()
        for item in jobs:
            job = item.job
            # The deadline is on the client's clock: moved onto ours by the offset its
            # beats show, so a node whose clock is off drops only jobs really late.
            budget_s = _budget_s(job, now_ns - self._client_offset_ns(job))
            if budget_s is not None and budget_s <= 0:
                self._settle_all(item, TaskTimeout(job.fn_name, job.timeout_s or 0.0))
                continue
            if budget_s is None:
                packable.setdefault(job.fn_name, []).extend(
                    (item, k) for k in range(len(job.calls))
                )
                continue
            for index in range(len(job.calls)):
                await self._submit(job.fn_name, [(item, index)], budget_s)
        for fn_name, slots in packable.items():
            size = _chunk_size(len(slots), self._engine.workers)
            for start in range(0, len(slots), size):
                await self._submit(fn_name, slots[start : start + size], None)

    async def _submit(self, fn_name: str, slots: list[Slot], timeout_s: float | None) -> None:
        fn = self._registry[fn_name]
        calls = [item.job.calls[index] for item, index in slots]
        try:
            handle = await self._engine.submit_batch(fn, calls, timeout=timeout_s, kill=True)
        except Exception as exc:
            for item, index in slots:
                self._settle(item, index, [0, describe_error(exc)])
            return
        self._running[handle] = slots
        handle.add_done_callback(lambda done: self._collect(done, slots))

    def abandon(self, lost_entry_ids: set[bytes]) -> list[tuple[bytes, int]]:
        """Stop the local work of entries this node no longer owns, running calls included.

        Another node runs those jobs now; finishing them here would run their side effects
        twice (their results would be dropped anyway). Returns ``(job id, calls stopped)``
        for each job whose work was stopped here.
        """
        stopped: dict[bytes, int] = {}
        for handle, slots in list(self._running.items()):
            lost = [item for item, _ in slots if item.entry_id in lost_entry_ids]
            if len(lost) == len(slots):  # a task shared with jobs still owned finishes
                handle.cancel()
                for item in lost:
                    stopped[item.job.job_id] = stopped.get(item.job.job_id, 0) + 1
        return list(stopped.items())

    def cancel_job(self, job_id: bytes) -> int:
        """Stop the local calls of one job (its caller stopped waiting); returns how many
        tasks were cancelled. A task shared with other jobs finishes."""
        stopped = 0
        for handle, slots in list(self._running.items()):
            if all(item.job.job_id == job_id for item, _ in slots):
                handle.cancel()
                stopped += 1
        return stopped

    def _collect(self, handle: TaskHandle[BatchResults[Any]], slots: list[Slot]) -> None:
        self._running.pop(handle, None)
        if handle.cancelled():
            error: BaseException | None = EngineClosed("the worker node stopped")
        else:
            error = handle.exception()
        for position, (item, index) in enumerate(slots):
            if error is not None:
                described = [0, describe_error(error)]
            else:
                described = describe_outcome(handle.result()[position])
            self._settle(item, index, described)

    def _settle_all(self, item: InFlight, error: BaseException) -> None:
        for index in range(len(item.job.calls)):
            self._settle(item, index, [0, describe_error(error)])

    def _settle(self, item: InFlight, index: int, described: list[Any]) -> None:
        if item.outcomes[index] is not None:
            return
        item.outcomes[index] = described
        item.remaining -= 1
        if item.remaining == 0:
            self._on_done(item)


def _budget_s(job: Job, now_ns: int) -> float | None:
    """Seconds the job may still run: its timeout, cut short by its deadline."""
    budget_s = job.timeout_s
    if job.deadline_ns is not None:
        left_s = (job.deadline_ns - now_ns) / 1e9
        budget_s = left_s if budget_s is None else min(budget_s, left_s)
    return budget_s


def _chunk_size(n_calls: int, workers: int) -> int:
    chunks = max(1, workers * CHUNKS_PER_WORKER)
    return max(1, min(MAX_CHUNK_CALLS, math.ceil(n_calls / chunks)))
