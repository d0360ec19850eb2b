"""Generators the streaming tests run in workers (importable by name)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path


def count_to(n: int) -> Iterator[tuple[int, int]]:
    for i in range(n):
        yield i, os.getpid()


def wait_for_file_between(first: int, path: str) -> Iterator[int]:
    """Yield ``first``, then wait until ``path`` exists before the next item."""
    yield first
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    yield first + 1


def note_progress(n: int, progress_path: str, closed_path: str) -> Iterator[int]:
    """Write how many items were made so far; mark ``closed_path`` when closed."""
    try:
        for i in range(n):
            Path(progress_path).write_text(str(i + 1))
            yield i
    finally:
        Path(closed_path).write_text(str(os.getpid()))


def fail_after(n: int) -> Iterator[int]:
    yield from range(n)
    raise ValueError(f"failed after {n}")


def stuck_after_one(started_path: str) -> Iterator[int]:
    yield 1
    Path(started_path).touch()
    time.sleep(60)  # does not yield again: only a kill stops it
    yield 2


async def ticks(n: int) -> AsyncIterator[tuple[int, int]]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i, os.getpid()
