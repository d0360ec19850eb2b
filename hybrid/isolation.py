"""What a worker applies to itself as it starts: CPU pinning, a memory ceiling, a nice level.

These are plain functions for the worker's initializer; each changes only the calling
process. :func:`isolate_worker` applies all three in the order that matters (the limit
before the user's code can allocate, the nice level last because it cannot be undone
without privileges). A worker that breaks its hard limit fails only its own task, with
:class:`MemoryLimitExceeded`.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence

from ._errors import IsolationError
from .machine import usable_cpu_ids


def spread_cpu(index: int, cpu_ids: Sequence[int] | None = None) -> int:
    """The CPU for worker slot ``index``, spread evenly over ``cpu_ids`` at any pool size.

    Slots take the CPUs in bit-reversed order (0, n/2, n/4, 3n/4...), so the first k
    slots sit as far apart as they can for every k, and a slot keeps its CPU when the
    pool grows or shrinks. Past ``len(cpu_ids)`` slots the order starts over.

    Args:
        index: the worker slot's index, from 0.
        cpu_ids: the CPUs to use; None means those this process may run on.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, not {index!r}")
    ids = sorted(cpu_ids) if cpu_ids is not None else usable_cpu_ids()
    if not ids:
        raise ValueError("no CPU to pin to")
    return ids[_spread_order(len(ids))[index % len(ids)]]


def _spread_order(count: int) -> list[int]:
    bits = max(1, (count - 1).bit_length())
    reversed_indices = (int(format(i, f"0{bits}b")[::-1], 2) for i in range(1 << bits))
    return [i for i in reversed_indices if i < count]


def pin_to_cpus(cpus: int | Sequence[int]) -> None:
    """Run this process only on ``cpus`` (one id or several).

    Raises:
        IsolationError: the platform cannot pin, or a CPU is not available.
    """
    wanted = {cpus} if isinstance(cpus, int) else set(cpus)
    if not hasattr(os, "sched_setaffinity"):
        raise IsolationError("CPU pinning needs os.sched_setaffinity (Linux)")
    try:
        os.sched_setaffinity(0, wanted)
    except OSError as exc:
        raise IsolationError(f"cannot pin to CPUs {sorted(wanted)}: {exc}") from exc


def limit_address_space(limit_bytes: int) -> None:
    """Cap this process's address space (RLIMIT_AS): an allocation past it raises
    MemoryError in the process, which the process survives.

    Linux ignores RLIMIT_RSS, so the address space is the only hard limit a process can
    set on itself; it counts reserved as well as resident memory (thread stacks, mapped
    files), so leave room above the RSS you expect. An existing lower limit is kept.

    Raises:
        IsolationError: the limit cannot be set.
    """
    if limit_bytes < 1:
        raise ValueError(f"limit_bytes must be >= 1, not {limit_bytes!r}")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    new_hard = limit_bytes if hard == resource.RLIM_INFINITY else min(hard, limit_bytes)
    new_soft = new_hard if soft == resource.RLIM_INFINITY else min(soft, new_hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (new_soft, new_hard))
    except (OSError, ValueError) as exc:
        raise IsolationError(f"cannot limit address space to {limit_bytes} bytes: {exc}") from exc


def lower_priority(nice: int) -> int:
    """Add ``nice`` (>= 0) to this process's niceness; return the niceness now."""
    if nice < 0:
        raise ValueError(f"nice must be >= 0 (raising priority needs privileges), not {nice}")
    return os.nice(nice)


def isolate_worker(
    cpus: int | Sequence[int] | None = None,
    address_space_bytes: int | None = None,
    nice: int = 0,
) -> None:
    """Apply a worker's isolation to the calling process; None and 0 leave a setting alone.

    Meant for the worker initializer, before the user's initializer runs.
    """
    if address_space_bytes is not None:
        limit_address_space(address_space_bytes)
    if cpus is not None:
        pin_to_cpus(cpus)
    if nice:
        lower_priority(nice)


def is_memory_limit_error(summary: str) -> bool:
    """Whether a worker's error summary (``"module.Type: message"``) is a refused
    allocation, i.e. a MemoryError the engine should report as :class:`MemoryLimitExceeded`."""
    return summary.startswith(("builtins.MemoryError", f"{__name__}.MemoryLimitExceeded"))
