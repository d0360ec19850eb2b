"""A task on its way through a pool, and the batch that carries it to a worker."""

from __future__ import annotations

import asyncio
import enum
import pickle
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import NotPicklable

if TYPE_CHECKING:
    from ._slot import Slot


class TaskState(enum.Enum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class Task:
    """One call of ``fn(*args)``, from submission to its result."""

    __slots__ = (
        "attempts",
        "batch",
        "fn_key",
        "future",
        "index",
        "key",
        "name",
        "payload",
        "retries_left",
        "state",
        "submitted_at",
        "timeout_s",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        *,
        timeout_s: float | None,
        retries: int,
        submitted_at: float,
        key: Hashable | None = None,
    ) -> None:
        self.fn_key = function_key(fn)
        self.name = function_name(fn)
        self.payload = encode_call(fn, args)
        self.future = future
        self.timeout_s = timeout_s
        self.retries_left = retries
        self.attempts = 0
        self.state = TaskState.QUEUED
        self.batch: Batch | None = None
        self.index = -1
        self.submitted_at = submitted_at
        self.key = key

    def __repr__(self) -> str:
        return f"<Task {self.name} {self.state.value}>"


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


def function_key(fn: Callable[..., Any]) -> Hashable:
    """What identifies a function for timing purposes, seeing through partials."""
    inner = getattr(fn, "func", fn)
    return getattr(inner, "__module__", None), getattr(inner, "__qualname__", repr(inner))


def function_name(fn: Callable[..., Any]) -> str:
    inner = getattr(fn, "func", fn)
    return str(getattr(inner, "__qualname__", None) or repr(inner))


def encode_call(fn: Callable[..., Any], args: tuple[Any, ...]) -> bytes:
    """Pickle a call now, so a bad function or argument fails its caller at once."""
    try:
        return pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise NotPicklable(_explain_unpicklable(fn, args, exc)) from exc


def _explain_unpicklable(fn: Callable[..., Any], args: tuple[Any, ...], exc: Exception) -> str:
    try:
        pickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
    except Exception as fn_exc:
        return (
            f"cannot send function {function_name(fn)!r} to a worker process: {fn_exc}. "
            "Workers import functions by name: define it at module level "
            "(not a lambda, a local function or a bound method of an unpicklable object)."
        )
    for position, arg in enumerate(args):
        try:
            pickle.dumps(arg, pickle.HIGHEST_PROTOCOL)
        except Exception as arg_exc:
            return (
                f"cannot send argument {position} of {function_name(fn)}() "
                f"({type(arg).__qualname__}) to a worker process: {arg_exc}"
            )
    return f"cannot send the call {function_name(fn)}() to a worker process: {exc}"
