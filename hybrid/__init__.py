"""hybrid: an asyncio event loop for I/O, worker processes for CPU-bound calls."""

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
from .isolation import MemoryLimitExceeded

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
    "run",
    "usable_cpus",
]

__version__ = "0.1.0"
