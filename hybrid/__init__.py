"""hybrid: an asyncio event loop for I/O, worker processes for CPU-bound calls."""

# Names are imported on first use, so a worker process, which needs only
# hybrid._core.worker, does not load the engine, asyncio's machinery or the messaging layer.
# _EXPORTS is the one table of public names; __all__ is made from it, and a test checks that
# the TYPE_CHECKING imports below (for type checkers) match it.

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._core.default_engine import to_process as to_process
    from ._core.engine import Engine as Engine
    from ._core.executor import EngineExecutor as EngineExecutor
    from ._core.handle import TaskHandle as TaskHandle
    from ._core.map import MapResults as MapResults
    from ._core.outcome import BatchResults as BatchResults, CallResult as CallResult
    from ._core.profiling import Profile as Profile
    from ._core.runner import run as run
    from ._core.spec import PoolSpec as PoolSpec
    from ._core.stats import EngineStats as EngineStats, WorkerStats as WorkerStats
    from ._core.worker import (
        current_task_id as current_task_id,
        report_progress as report_progress,
    )
    from ._errors import (
        EngineClosed as EngineClosed,
        HybridError as HybridError,
        IsolationError as IsolationError,
        LeaseReleased as LeaseReleased,
        LockTimeout as LockTimeout,
        MemoryLimitExceeded as MemoryLimitExceeded,
        NotPicklable as NotPicklable,
        OptimisticConflict as OptimisticConflict,
        Overloaded as Overloaded,
        RejectedMessage as RejectedMessage,
        RemoteError as RemoteError,
        RemoteTraceback as RemoteTraceback,
        TaskTimeout as TaskTimeout,
        TransportClosed as TransportClosed,
        UnknownPeer as UnknownPeer,
        WorkerCrashed as WorkerCrashed,
        WorkerStartError as WorkerStartError,
    )
    from .machine import usable_cpus as usable_cpus
    from .observers import TaskEvent as TaskEvent, TaskObserver as TaskObserver

# Public name -> the module that defines it.
_EXPORTS = {
    "Engine": "._core.engine",
    "EngineExecutor": "._core.executor",
    "to_process": "._core.default_engine",
    "TaskHandle": "._core.handle",
    "MapResults": "._core.map",
    "BatchResults": "._core.outcome",
    "CallResult": "._core.outcome",
    "Profile": "._core.profiling",
    "run": "._core.runner",
    "PoolSpec": "._core.spec",
    "EngineStats": "._core.stats",
    "WorkerStats": "._core.stats",
    "current_task_id": "._core.worker",
    "report_progress": "._core.worker",
    "usable_cpus": ".machine",
    "TaskEvent": ".observers",
    "TaskObserver": ".observers",
    **dict.fromkeys(
        (
            "EngineClosed",
            "HybridError",
            "IsolationError",
            "LeaseReleased",
            "LockTimeout",
            "MemoryLimitExceeded",
            "NotPicklable",
            "OptimisticConflict",
            "Overloaded",
            "RejectedMessage",
            "RemoteError",
            "RemoteTraceback",
            "TaskTimeout",
            "TransportClosed",
            "UnknownPeer",
            "WorkerCrashed",
            "WorkerStartError",
        ),
        "._errors",
    ),
}

__all__ = sorted(_EXPORTS)

__version__ = "0.1.0"


def __getattr__(name: str) -> _typing.Any:
    home = _EXPORTS.get(name)
    if home is None:
        raise AttributeError(f"module 'hybrid' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
