"""Shared by the baseline programs: start worker processes, poll result keys, report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

HERE = os.path.dirname(os.path.abspath(__file__))


def start_workers(
    command: Sequence[str], count: int, env: dict[str, str]
) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            list(command),
            cwd=HERE,
            env={**os.environ, **env, "PYTHONPATH": HERE},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


async def wait_for_keys(url: str, keys: list[str], timeout_s: float = 600.0) -> None:
    """Poll until every key exists (the queues store one result key per job)."""
    client = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + timeout_s
    remaining = list(keys)
    try:
        while remaining:
            async with client.pipeline(transaction=False) as pipe:
                for key in remaining:
                    pipe.exists(key)
                found = await pipe.execute()
            remaining = [key for key, present in zip(remaining, found, strict=True) if not present]
            if remaining:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(remaining)} results missing")
                await asyncio.sleep(0.01)
    finally:
        await client.aclose()


async def delete_matching(url: str, pattern: str) -> None:
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=pattern, count=10_000)]
    for start in range(0, len(keys), 10_000):
        await client.delete(*keys[start : start + 10_000])
    await client.aclose()


python = sys.executable
