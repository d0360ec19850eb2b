"""hybrid: an asyncio event loop for I/O, worker processes for CPU-bound calls.

Names are imported on first use, so a worker process, which needs only
``hybrid._worker``, does not load the engine, asyncio's machinery or the messaging layer.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._engine import Engine
    from ._errors import (
        EngineClosed,
        HybridError,
        NotPicklable,
        Overloaded,
        RemoteError,
        RemoteTraceback,
        TaskTimeout,
        WorkerCrashed,
        WorkerStartError,
    )
    from ._machine import usable_cpus
    from ._map import MapResults
    from ._runner import run
    from ._spec import PoolSpec
    from ._stats import EngineStats, WorkerStats
    from ._worker import current_task_id
    from .isolation import MemoryLimitExceeded

_HOMES = {
    "Engine": "._engine",
    "EngineClosed": "._errors",
    "HybridError": "._errors",
    "NotPicklable": "._errors",
    "Overloaded": "._errors",
    "RemoteError": "._errors",
    "RemoteTraceback": "._errors",
    "TaskTimeout": "._errors",
    "WorkerCrashed": "._errors",
    "WorkerStartError": "._errors",
    "usable_cpus": "._machine",
    "MapResults": "._map",
    "run": "._runner",
    "PoolSpec": "._spec",
    "EngineStats": "._stats",
    "WorkerStats": "._stats",
    "current_task_id": "._worker",
    "MemoryLimitExceeded": ".isolation",
}

__all__ = [
    "Engine",
    "EngineClosed",
    "EngineStats",
    "HybridError",
    "MapResults",
    "MemoryLimitExceeded",
    "NotPicklable",
    "Overloaded",
    "PoolSpec",
    "RemoteError",
    "RemoteTraceback",
    "TaskTimeout",
    "WorkerCrashed",
    "WorkerStartError",
    "WorkerStats",
    "current_task_id",
    "run",
    "usable_cpus",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'hybrid' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
