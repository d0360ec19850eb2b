"""What a pool of workers is made of: its size, start-up and limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PoolSpec:
    """Settings of one named pool (``Engine(pools={"parse": PoolSpec(workers=2)})``).

    Args:
        workers: worker processes; None means the CPUs this process may really use.
        initializer: called once in each worker as it starts, with ``initargs``.
        max_tasks_per_child: replace a worker after it has run this many calls.
        max_queued: calls allowed to wait for a worker; None means no bound.
        max_rss_bytes: replace a worker, after its current batch, once its resident
            memory passes this (leak protection); None means no limit.
        memory_limit_bytes: a hard address-space limit in each worker (RLIMIT_AS): an
            allocation past it fails that call with MemoryError, and the worker is replaced.
        pin_cpus: pin each worker to one of the usable CPUs, spread evenly.
        nice: niceness added to each worker (0 leaves it as the parent's).
    """

    workers: int | None = None
    initializer: Callable[..., object] | None = None
    initargs: tuple[Any, ...] = ()
    max_tasks_per_child: int | None = None
    max_queued: int | None = None
    max_rss_bytes: int | None = None
    memory_limit_bytes: int | None = None
    pin_cpus: bool = False
    nice: int = 0

    def __post_init__(self) -> None:
        if self.workers is not None:
            _check_int("workers", self.workers, 1)
        for name in ("max_tasks_per_child", "max_rss_bytes", "memory_limit_bytes"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, 1)
        if self.max_queued is not None:
            _check_int("max_queued", self.max_queued, 0)
        _check_int("nice", self.nice, 0)
        if self.initializer is not None and not callable(self.initializer):
            raise TypeError(f"initializer must be callable, not {self.initializer!r}")


@dataclass(frozen=True)
class WorkerSettings:
    """What one worker process applies to itself at start, before the user's initializer."""

    cpu: int | None = None
    memory_limit_bytes: int | None = None
    nice: int = 0
    log_to: tuple[Any, int] | None = None  # (queue, level): forward log records to the parent


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, not {value!r}")
