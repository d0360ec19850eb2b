"""Code the resource tests run in other processes: worker-side functions and hog scripts.

As a script: ``python -m tests.resources.children hog_cpu`` spins until killed;
``python -m tests.resources.children hog_memory MB`` waits for a line on stdin, then
allocates and touches MB megabytes, prints ``ready`` and waits until killed.
"""

from __future__ import annotations

import os
import resource
import sys
import time


def affinity() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def niceness() -> int:
    return os.nice(0)


def address_space_limit() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_AS)


def allocate(n_bytes: int) -> str:
    """Allocate and touch ``n_bytes``; say whether it worked (the process survives either way)."""
    try:
        block = bytearray(n_bytes)
        block[:: 1 << 12] = b"\x01" * len(range(0, n_bytes, 1 << 12))
    except MemoryError:
        return "MemoryError"
    return f"allocated {len(block)}"


def _hog_cpu() -> None:
    while True:
        pass


def _hog_memory(megabytes: int) -> None:
    sys.stdin.readline()
    block = bytearray(megabytes << 20)
    block[:: 1 << 12] = b"\x01" * len(range(0, len(block), 1 << 12))
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    if sys.argv[1] == "hog_cpu":
        _hog_cpu()
    elif sys.argv[1] == "hog_memory":
        _hog_memory(int(sys.argv[2]))
