"""Turning a worker's result record back into a value or an exception in the parent."""

from __future__ import annotations

import pickle
from typing import Any

from ._errors import NotPicklable, RemoteError, RemoteTraceback


class Outcome:
    """A finished task as the worker reported it."""

    __slots__ = ("elapsed_s", "error", "ok", "value")

    def __init__(self, ok: bool, elapsed_s: float, value: Any, error: BaseException | None) -> None:
        self.ok = ok
        self.elapsed_s = elapsed_s
        self.value = value
        self.error = error


def decode(record: bytes, task_name: str) -> Outcome | None:
    """Decode a record; None for a task the worker skipped because it was cancelled."""
    try:
        decoded = pickle.loads(record)
    except Exception as exc:
        error = NotPicklable(f"the result of {task_name}() cannot be read in the parent: {exc!r}")
        return Outcome(False, 0.0, None, error)
    if decoded is None:
        return None
    ok, elapsed_s, payload = decoded
    if ok:
        return Outcome(True, elapsed_s, payload, None)
    return Outcome(False, elapsed_s, None, _rebuild_error(payload, task_name))


def _rebuild_error(payload: tuple[bytes | None, str, str, str], task_name: str) -> BaseException:
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
