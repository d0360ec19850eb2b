"""Turning a call into bytes a worker can load: by reference where it can, by value where not.

``pickle`` sends a function as its module and name, and the worker imports it. That
fails for what the worker cannot import: a lambda, a local function or closure, and
anything defined in ``__main__`` when the main module is ``python -c``, a script piped
to ``python -``, a notebook or the REPL (the worker's ``__main__`` is not the parent's).
Those go by value through cloudpickle, when it is installed
(``pip install 'hybrid-engine[cloudpickle]'``). The worker loads either with ``pickle.loads``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from .._errors import NotPicklable

# A pickle that names __main__ refers to the parent's main module, which the worker
# does not have (or has as a different module): such a payload goes by value instead.
_MAIN_REFERENCE = b"__main__"


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` by reference, or by value (cloudpickle) where a worker could not load it.

    Raises:
        NotPicklable: neither way works; the message says why.
    """
    try:
        payload = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        by_reference_error: Exception | None = exc
    else:
        if _MAIN_REFERENCE not in payload:
            return payload
        by_reference_error = None
    return dumps_by_value(obj, by_reference_error)


def dumps_by_value(obj: Any, by_reference_error: Exception | None = None) -> bytes:
    """Pickle ``obj`` with cloudpickle; NotPicklable if it is missing or fails."""
    try:
        import cloudpickle
    except ImportError:
        why = by_reference_error or "it refers to __main__, which worker processes do not share"
        raise NotPicklable(
            f"{why}; objects not importable by name (lambdas, closures, anything defined in "
            "__main__, a notebook or the REPL) go by value with cloudpickle: "
            "pip install 'hybrid-engine[cloudpickle]'"
        ) from by_reference_error
    try:
        payload: bytes = cloudpickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise NotPicklable(f"not by name, nor by value: {exc}") from exc
    return payload


def as_sendable(fn: Callable[..., Any]) -> Callable[..., Any] | bytes:
    """``fn`` itself if a worker can import it by name, else its by-value pickle.

    For what multiprocessing pickles itself (an initializer), whose arguments may hold
    things only its own pickler sends (sockets, queues), so they are left to it.
    """
    try:
        by_reference = pickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return dumps_by_value(fn, exc)
    return fn if _MAIN_REFERENCE not in by_reference else dumps_by_value(fn)


def can_send(obj: Any) -> str | None:
    """Why ``obj`` cannot be sent to a worker either way, or None if it can."""
    try:
        dumps(obj)
    except NotPicklable as exc:
        return str(exc)
    return None
