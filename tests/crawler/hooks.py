"""Extraction hooks for the crawler tests; they run in the crawler's worker processes."""

from __future__ import annotations

import os
import sys
from typing import Any


def word_count(url: str, tree: Any) -> dict[str, Any]:
    """Count the words of the body and name the worker that did it."""
    body = tree.body
    words = len(body.text(separator=" ").split()) if body is not None else 0
    return {"words": words, "pid": os.getpid()}


def niceness(url: str, tree: Any) -> dict[str, Any]:
    """The niceness of the worker that parsed the page."""
    return {"nice": os.nice(0), "pid": os.getpid()}


def block_placement(url: str, tree: Any) -> dict[str, Any]:
    """Whether a 1 MB block lands in the worker's heap, once a 2 MB one was freed."""
    return {"in_heap": large_block_in_heap()}


def large_block_in_heap() -> bool:
    """Whether a 1 MB block comes from the heap once a 2 MB one was freed.

    Untuned, glibc raises its mmap threshold to the 2 MB it saw freed, and grows the heap
    for the 1 MB block; with a fixed threshold the block gets a mapping of its own.
    """
    freed = bytes(2_000_000)
    del freed
    block = bytes(1_000_000)
    return in_heap(id(block))


def in_heap(address: int) -> bool:
    """Whether ``address`` is inside this process's ``[heap]`` mapping."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                start, end = (int(part, 16) for part in line.split()[0].split("-"))
                return start <= address < end
    return False


def event_loop_modules(url: str, tree: Any) -> dict[str, Any]:
    """Which of the parent's event-loop modules the worker has imported."""
    return {"imported": sorted({"asyncio", "ssl", "aiohttp"} & set(sys.modules))}
