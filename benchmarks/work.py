"""Functions the engine benchmarks send to worker processes."""

from __future__ import annotations

import os
import time


def square(x: int) -> int:
    return x * x


def spin(seconds: float) -> int:
    """Pure-Python CPU work for about ``seconds``."""
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        count += 1
    return count


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def monotonic_now() -> float:
    return time.monotonic()


def stamp_then_exit(path: str) -> None:
    with open(path, "w") as handle:
        handle.write(repr(time.monotonic()))
    os._exit(1)


_leak: list[bytearray] = []
_cache: dict[int, int] = {}


def leaky(megabytes: int) -> int:
    """Grows its worker by ``megabytes`` on every call (a leak), returns the worker's RSS."""
    _leak.append(bytearray(megabytes * 1024 * 1024))
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def warm_lookup(key: int, cold_s: float = 0.01, warm_s: float = 0.001) -> bool:
    """10x faster when this worker has seen the key: spins cold_s, or warm_s once cached."""
    warm = key in _cache
    spin(warm_s if warm else cold_s)
    _cache[key] = key
    return warm
