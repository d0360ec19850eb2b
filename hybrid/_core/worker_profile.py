"""Profiling inside a worker: batches sent with ``profile`` run under one cProfile profiler.

The profiler is made at the first profiled batch and collects until the parent takes
its stats (:func:`take_stats`), which also ends it. Unprofiled batches never touch it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_profiler: Any = None  # a cProfile.Profile while this worker has profile data


@contextlib.contextmanager
def profiled() -> Iterator[None]:
    """Profile what runs inside, adding to this worker's profile so far."""
    global _profiler
    if _profiler is None:
        import cProfile

        _profiler = cProfile.Profile()
    _profiler.enable()
    try:
        yield
    finally:
        _profiler.disable()


def take_stats() -> dict[Any, Any]:
    """This worker's profile (pstats' raw form) since the last take; empty if none."""
    global _profiler
    profiler, _profiler = _profiler, None
    if profiler is None:
        return {}
    profiler.create_stats()
    stats: dict[Any, Any] = profiler.stats
    return stats
