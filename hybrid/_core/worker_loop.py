"""Async functions inside a worker: each worker runs them on an event loop of its own.

The loop (uvloop's where it is installed) is made at the first async call and kept for
the worker's life, so what a call leaves on it (a connection pool, a client session) is
there for the next call, as a sync function's module globals are.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # asyncio is imported by the first async call, not by every worker
    import asyncio

# Code flags, as in ``inspect``, without importing it in every worker.
_CO_COROUTINE = 0x80

_loop: asyncio.AbstractEventLoop | None = None


def is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` makes a coroutine (seeing through ``functools.partial``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    code = getattr(fn, "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


def call_async(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    """Run ``fn(*args)`` to completion on this worker's loop and return its value."""
    return run(fn(*args))


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion on this worker's loop."""
    global _loop
    if _loop is None or _loop.is_closed():
        from .runner import loop_factory

        _loop = loop_factory()()
    return _loop.run_until_complete(coroutine)


def awaited(value: Any) -> Any:
    """``value``, or what it gives once run if it is a coroutine (a wrapped async call)."""
    if type(value) is types.CoroutineType:
        return run(value)
    return value
