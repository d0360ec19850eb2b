"""Small waits and process checks shared by the engine tests."""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections import Counter
from pathlib import Path

import hybrid


async def wait_for_full_strength(engine: hybrid.Engine, timeout_s: float = 20.0) -> None:
    """Wait until every worker slot has a live process again."""
    async with asyncio.timeout(timeout_s):
        while engine.stats().workers < engine.workers:
            await asyncio.sleep(0.01)


def pid_alive(pid: int) -> bool:
    """True while the pid names a process that has not exited (zombies count as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def wait_until_gone(pids: list[int], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while any(pid_alive(pid) for pid in pids):
            await asyncio.sleep(0.02)


def calls_recorded(path: Path) -> Counter[int]:
    """How many times each value was recorded by tasks.record_call."""
    if not path.exists():
        return Counter()
    return Counter(int(line) for line in path.read_text().split())


def worker_pids(engine: hybrid.Engine) -> list[int]:
    return [worker.pid for worker in engine.stats().per_worker if worker.pid is not None]


def children_of(pid: int) -> list[int]:
    """Direct child processes of pid that are still running (not zombies)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def literal_block(docstring: str | None) -> str:
    """The first ``::`` block of a docstring, dedented (docstring examples are run by tests)."""
    assert docstring
    _, _, after = docstring.partition("::\n")
    lines = []
    for line in after.splitlines()[1:]:
        if line and not line.startswith(" "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))
