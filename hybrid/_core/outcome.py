"""A call's outcome as the worker reports it, and turning it into a value or an exception.

An outcome is ``(True, seconds, value)``, ``(False, seconds, error)`` or None for a call
skipped because it was cancelled. The error is the worker's description of an exception
(pickled exception, summary, traceback text, unpicklable result type), or an exception
the parent made itself (a crash, a timeout).
"""

from __future__ import annotations

import marshal
import pickle
from collections.abc import Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

from .._errors import NotPicklable, RemoteError, RemoteTraceback
from .area import FAILURE, VALUE_FLOAT, VALUE_INT, VALUE_MARSHAL, VALUE_PICKLE

Outcome = tuple[bool, float, Any] | None
R = TypeVar("R")


class CallResult(NamedTuple, Generic[R]):
    """One call's outcome in a batch (:meth:`hybrid.Engine.submit_batch`).

    Attributes:
        ok: the call returned.
        value: what it returned; None unless ``ok``.
        error: what it raised (its worker's traceback as ``__cause__``), or the engine's
            error for it (:class:`~hybrid.WorkerCrashed`, :class:`~hybrid.TaskTimeout`);
            None if ``ok`` or if it never ran.
        ran: False for a call skipped because the batch was cancelled.
    """

    ok: bool
    value: R | None
    error: BaseException | None
    ran: bool = True


class BatchResults(Generic[R]):
    """The outcomes of a batch's calls, in order: ``results[i]`` is a :class:`CallResult`."""

    __slots__ = ("_chunk", "_name")

    def __init__(self, chunk: ChunkResults, name: str) -> None:
        self._chunk = chunk
        self._name = name

    def __len__(self) -> int:
        return len(self._chunk)

    def __getitem__(self, index: int) -> CallResult[R]:
        outcome = self._chunk[index]
        if outcome is None:
            return CallResult(False, None, None, ran=False)
        ok, _, payload = outcome
        if ok:
            return CallResult(True, payload, None)
        return CallResult(False, None, rebuild_error(payload, self._name))

    def __iter__(self) -> Iterator[CallResult[R]]:
        return (self[index] for index in range(len(self)))


class ChunkResults:
    """Per-call results of a chunk: every value, and apart, the few calls that did not succeed.

    Indexing gives a call's outcome: ``(True, 0.0, value)``, its failure, or None if it
    was cancelled before it ran.
    """

    __slots__ = ("problems", "values")

    def __init__(self, n_calls: int) -> None:
        self.values: list[Any] = [None] * n_calls
        self.problems: dict[int, Outcome] = {}

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> Outcome:
        if index in self.problems:
            return self.problems[index]
        return True, 0.0, self.values[index]

    def store(self, first: int, values: list[Any], problems: dict[int, Outcome]) -> None:
        """Keep calls settled from ``first`` on; ``problems`` is keyed from 0."""
        if first == 0 and len(values) == len(self.values):
            self.values = values
        else:
            self.values[first : first + len(values)] = values
        for index, outcome in problems.items():
            self.problems[first + index] = outcome


def read_records(
    records: Iterable[tuple[int, Any]], names: Iterable[str]
) -> tuple[list[Any], dict[int, Outcome]]:
    """Decode the records a dead worker left in its area: values, and the calls that failed."""
    values: list[Any] = []
    problems: dict[int, Outcome] = {}
    for index, ((kind, record), name) in enumerate(zip(records, names, strict=False)):
        value = None
        try:
            if kind in (VALUE_INT, VALUE_FLOAT):
                value = record
            elif kind == VALUE_MARSHAL:
                value = marshal.loads(record)
            elif kind == VALUE_PICKLE:
                value = pickle.loads(record)
            elif kind == FAILURE:
                problems[index] = pickle.loads(record)
            else:
                problems[index] = None
        except Exception as exc:
            error = NotPicklable(f"the result of {name}() cannot be read in the parent: {exc!r}")
            problems[index] = failed(error)
        values.append(value)
    return values, problems


def failed(error: BaseException) -> Outcome:
    """The outcome of a call the parent failed on its own account."""
    return False, 0.0, error


def rebuild_error(payload: Any, task_name: str) -> BaseException:
    if isinstance(payload, BaseException):
        return payload
    exc_bytes, summary, traceback_text, unpicklable_result = payload
    error: BaseException
    if unpicklable_result:
        error = NotPicklable(
            f"the result of {task_name}() ({unpicklable_result}) cannot be sent back "
            f"from the worker: {summary}"
        )
    else:
        error = _unpickle_exception(exc_bytes, summary)
    error.__cause__ = RemoteTraceback(traceback_text)
    return error


def _unpickle_exception(exc_bytes: bytes | None, summary: str) -> BaseException:
    if exc_bytes is not None:
        try:
            exc = pickle.loads(exc_bytes)
        except Exception:
            pass
        else:
            if isinstance(exc, BaseException):
                return exc
    return RemoteError(f"the task raised {summary} (the exception itself could not be sent back)")
