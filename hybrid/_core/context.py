"""The multiprocessing context workers start from, fixed for a main module read from stdin.

With ``python -`` the main module's ``__file__`` is ``"<stdin>"``. spawn and forkserver
children are told to run the main module again from that path, which does not exist,
so every worker dies before it serves (``BrokenProcessPool``). Here the path is hidden
while a worker process is launched, as if the main module had no file (``python -c``):
what the worker needs from ``__main__`` travels by value instead (see ``pickling``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context as mp_context
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def _unrunnable_main_hidden() -> Iterator[None]:
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is None or main_file is None or os.path.isfile(main_file):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = main_file


class _ForkServerProcess(mp_context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        with _unrunnable_main_hidden():
            return mp_context.ForkServerProcess._Popen(process_obj)


class _SpawnProcess(mp_context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        with _unrunnable_main_hidden():
            return mp_context.SpawnProcess._Popen(process_obj)


class _ForkServerContext(mp_context.ForkServerContext):
    Process = _ForkServerProcess


class _SpawnContext(mp_context.SpawnContext):
    Process = _SpawnProcess


def worker_context(start_method: str) -> mp_context.BaseContext:
    """The context to start workers with ``start_method``."""
    if start_method == "forkserver":
        return _ForkServerContext()
    if start_method == "spawn":
        return _SpawnContext()
    return multiprocessing.get_context(start_method)
