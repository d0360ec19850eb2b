"""A task on its way through a pool, and the batch that carries it to a worker.

A task is one call of a function (``engine.run``) or a chunk of calls of one function
(``engine.map`` over tiny tasks). Either way the worker reports every call on its own,
so a worker's death settles exactly the calls it finished.
"""

from __future__ import annotations

import asyncio
import enum
import types
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import NotPicklable, TaskTimeout, WorkerCrashed
from ..observers import TaskEvent
from . import pickling
from .outcome import ChunkResults

if TYPE_CHECKING:
    from .progress import Progress, ProgressCallback
    from .slot import Slot


class TaskState(enum.Enum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class Task:
    """One call, or a chunk of calls, of ``fn``: from submission to its outcome.

    A single call's future gets the value or the exception. A chunk's future gets its
    :class:`ChunkResults` (see ``_outcome``) once every call has settled.
    """

    __slots__ = (
        "attempts",
        "batch",
        "calls",
        "first",
        "fn",
        "fn_key",
        "future",
        "id",
        "key",
        "kill_on_cancel",
        "memory_kills",
        "n_calls",
        "name",
        "on_progress",
        "one_arg",
        "payload",
        "pending_blames",
        "pool",
        "progress",
        "results",
        "retries_left",
        "run_s",
        "settled_at",
        "state",
        "submitted_at",
        "timeout_s",
        "worker_pid",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        calls: list[Any],
        future: asyncio.Future[Any],
        *,
        chunk: bool = False,
        timeout_s: float | None = None,
        retries: int = 0,
        submitted_at: float = 0.0,
        key: Hashable | None = None,
        pool: str = "default",
        described_as: Callable[..., Any] | None = None,
        one_arg: bool = False,
        task_id: int = 0,
    ) -> None:
        self.id = task_id  # its calls are numbered task_id, task_id + 1, ...
        self.fn = fn
        self.one_arg = one_arg  # calls are single arguments, not argument tuples
        # A wrapper (e.g. the shared-memory call) is timed and named as the user's function.
        self.fn_key, self.name = describe(described_as or fn)
        self.payload = encode_calls(fn, calls, one_arg)
        self.calls = calls if chunk else None
        self.results = ChunkResults(len(calls)) if chunk else None
        self.first = 0
        self.n_calls = len(calls)
        self.memory_kills = 0  # times its worker was killed under it to save memory
        self.pending_blames = 0  # crashed calls whose error waits for the worker's exit code
        self.future = future
        self.timeout_s = timeout_s
        self.retries_left = retries
        self.attempts = 0
        # Seconds its calls ran, as its worker timed them; None until a worker reported.
        self.run_s: float | None = None
        self.worker_pid: int | None = None  # the process it was last sent to
        self.kill_on_cancel = False  # a chunk whose running call must stop on cancel too
        self.settled_at: float | None = None  # loop time its last batch came back
        self.state = TaskState.QUEUED
        self.batch: Batch | None = None
        self.submitted_at = submitted_at
        self.key = key
        self.pool = pool
        self.on_progress: ProgressCallback | None = None
        self.progress: Progress | None = None  # the latest hybrid.report_progress seen

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name} x{self.n_calls} {self.state.value}>"

    def times(self, now: float) -> tuple[float | None, float | None]:
        """``(queue wait, run)`` in seconds; None for a task that never ran.

        The run is as its worker timed it; without a report (its worker died) it counts
        from the moment its last batch was sent. The wait is all the rest since it was
        submitted: a task sent to wait behind another on its worker is queueing there.
        """
        batch = self.batch
        if batch is None and self.run_s is None:
            return None, None
        end = self.settled_at if self.settled_at is not None else now
        run_s = self.run_s
        if run_s is None:
            run_s = max(0.0, end - batch.started_at) if batch is not None else 0.0
        return max(0.0, end - self.submitted_at - run_s), run_s

    def event(self, outcome: str | None = None, now: float = 0.0) -> TaskEvent:
        """This task as an observer sees it (with its times once it has an outcome)."""
        wait_s, run_s = self.times(now) if outcome is not None else (None, None)
        calls = 1 if self.results is None else len(self.results)
        return TaskEvent(
            self.id, self.name, self.pool, calls, outcome, wait_s, run_s, self.worker_pid
        )

    @property
    def is_chunk(self) -> bool:
        return self.results is not None

    def advance(self, settled: int) -> None:
        """Drop the first ``settled`` calls; what is left is sent again if it is requeued."""
        if settled == 0:
            return
        self.first += settled
        self.n_calls -= settled
        if self.n_calls and self.calls is not None:
            self.payload = encode_calls(self.fn, self.calls[self.first :], self.one_arg)


@dataclass(eq=False)
class Batch:
    """Tasks sent to one worker in one round trip."""

    slot: Slot
    parity: int
    tasks: list[Task]
    started_at: float
    timer: asyncio.TimerHandle | None = None
    kill_reason: str | None = None  # "timeout", "cancel" or "close" when the parent killed it
    settled: bool = False
    short: bool = False  # quick enough that another batch may wait behind it

    def call_offset(self, task: Task) -> int:
        """Index of the task's first call among the batch's calls."""
        offset = 0
        for other in self.tasks:
            if other is task:
                return offset
            offset += other.n_calls
        raise ValueError(f"{task!r} is not in this batch")


def describe(fn: Callable[..., Any]) -> tuple[Hashable, str]:
    """The function's timing key and display name, cached for plain functions.

    Only module-level functions are remembered: a ``partial`` may carry large arguments
    that must not be kept alive here.
    """
    if type(fn) is not types.FunctionType:
        return function_key(fn), function_name(fn)
    description = _described.get(fn)
    if description is None:
        if len(_described) >= _DESCRIBED_MAX:
            _described.clear()
        description = _described[fn] = function_key(fn), function_name(fn)
    return description


_DESCRIBED_MAX = 4096  # functions remembered by describe()
_described: dict[Callable[..., Any], tuple[Hashable, str]] = {}


def function_key(fn: Callable[..., Any]) -> Hashable:
    """What identifies a function for timing purposes, seeing through partials."""
    inner = getattr(fn, "func", fn)
    return getattr(inner, "__module__", None), getattr(inner, "__qualname__", repr(inner))


def function_name(fn: Callable[..., Any]) -> str:
    inner = getattr(fn, "func", fn)
    return str(getattr(inner, "__qualname__", None) or repr(inner))


def encode_calls(fn: Callable[..., Any], calls: list[Any], one_arg: bool = False) -> bytes:
    """Pickle calls now, so a bad function or argument fails its caller at once.

    ``calls`` holds argument tuples, or with ``one_arg`` single arguments (cheaper to
    send: the worker makes the tuples). What a worker cannot import by name goes by
    value (see :mod:`hybrid._core.pickling`).
    """
    try:
        return pickling.dumps((fn, calls, one_arg))
    except NotPicklable as exc:
        spread = [(item,) for item in calls] if one_arg else calls
        raise NotPicklable(_explain_unpicklable(fn, spread, exc)) from exc


def _explain_unpicklable(
    fn: Callable[..., Any], calls: list[tuple[Any, ...]], exc: Exception
) -> str:
    why = pickling.can_send(fn)
    if why is not None:
        return f"cannot send function {function_name(fn)!r} to a worker process: {why}"
    for args in calls:
        for position, arg in enumerate(args):
            why = pickling.can_send(arg)
            if why is not None:
                return (
                    f"cannot send argument {position} of {function_name(fn)}() "
                    f"({type(arg).__qualname__}) to a worker process: {why}"
                )
    return f"cannot send the call {function_name(fn)}() to a worker process: {exc}"


def outcome_of(future: asyncio.Future[Any]) -> str:
    """How a settled task ended, in the words of :data:`hybrid.observers.OUTCOMES`."""
    if future.cancelled():
        return "cancelled"
    error = future.exception()
    if error is None:
        return "completed"
    if isinstance(error, TaskTimeout):
        return "timed_out"
    if isinstance(error, WorkerCrashed):
        return "crashed"
    return "failed"
