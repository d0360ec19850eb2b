"""Async functions the async-function tests send to workers (importable by name)."""

from __future__ import annotations

import asyncio
import os


async def io_then_square(x: int, wait_s: float = 0.0) -> tuple[int, int]:
    await asyncio.sleep(wait_s)
    return x * x, os.getpid()


async def loop_seen(_: object = None) -> tuple[str, int, int]:
    """The worker loop's class, its id and this process's pid."""
    loop = asyncio.get_running_loop()
    return type(loop).__module__, id(loop), os.getpid()


async def fail_after_await(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


async def sleep_forever(started_path: str | None = None) -> None:
    """Wait for ever, having created ``started_path`` (so a test knows it runs)."""
    if started_path is not None:
        open(started_path, "w").close()
    await asyncio.Event().wait()


async def crash_after_await(path: str) -> str:
    """Die (SIGKILL) the first time; succeed once ``path`` exists."""
    await asyncio.sleep(0)
    if os.path.exists(path):
        return "survived"
    open(path, "w").close()
    os.kill(os.getpid(), 9)
    return "unreachable"
