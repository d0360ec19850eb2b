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
