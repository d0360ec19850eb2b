"""The no-op job every queue runs in the benchmark."""

from __future__ import annotations


def noop(x: int) -> int:
    return x


def pause(x: int, seconds: float) -> int:
    """Sleep, then return ``x``: work that holds a node's worker for a while."""
    import time

    time.sleep(seconds)
    return x


def record(path: str, x: int, seconds: float) -> int:
    """Append one line per execution to ``path``, sleep, return ``x``."""
    import time

    with open(path, "a") as file:
        file.write(f"{x}\n")
    time.sleep(seconds)
    return x
