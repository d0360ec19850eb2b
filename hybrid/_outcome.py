"""A call's outcome as the worker reports it, and turning it into a value or an exception.

An outcome is ``(True, seconds, value)``, ``(False, seconds, error)`` or None for a call
skipped because it was cancelled. The error is the worker's description of an exception
(pickled exception, summary, traceback text, unpicklable result type), or an exception
the parent made itself (a crash, a timeout).
"""

from __future__ import annotations

import pickle
from typing import Any

from ._errors import NotPicklable, RemoteError, RemoteTraceback

Outcome = tuple[bool, float, Any] | None


def read_record(record: bytes, task_name: str) -> Outcome:
    """Unpickle one result record from the area (read after a worker died)."""
    try:
        outcome: Outcome = pickle.loads(record)
    except Exception as exc:
        error = NotPicklable(f"the result of {task_name}() cannot be read in the parent: {exc!r}")
        return False, 0.0, error
    return outcome


def failed(error: BaseException) -> Outcome:
    """The outcome of a call the parent failed on its own account."""
    return False, 0.0, error


def value_or_raise(outcome: Outcome, task_name: str) -> Any:
    assert outcome is not None
    ok, _, payload = outcome
    if ok:
        return payload
    raise rebuild_error(payload, task_name)


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
