"""The smallest useful hybrid program: CPU-bound calls off an asyncio loop.

python -m examples.quickstart
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import hybrid


def slow_hash(data: bytes, rounds: int = 20_000) -> str:
    """CPU-bound work: runs in a worker process, never on the event loop."""
    digest = data
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


async def heartbeat(stop: asyncio.Event) -> int:
    """Proof that the loop stays free: it ticks every 10 ms while the workers compute."""
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


async def main() -> None:
    async with hybrid.Engine() as engine:
        stop = asyncio.Event()
        ticker = asyncio.create_task(heartbeat(stop))
        started = time.perf_counter()

        one = await engine.run(slow_hash, b"hello")
        print(f"one call:      {one}")

        many = [digest async for digest in engine.map(slow_hash, (b"%d" % n for n in range(64)))]
        print(f"64 calls:      {len(many)} digests, first {many[0]}")

        try:
            await engine.run(slow_hash, b"too slow", 10_000_000, timeout=0.2)
        except hybrid.TaskTimeout as exc:
            print(f"timeout:       {exc}")

        await engine.run(slow_hash, b"after", 1)  # served by the replacement worker
        stop.set()
        elapsed = time.perf_counter() - started
        stats = engine.stats()
        print(f"loop ticks:    {await ticker} in {elapsed:.2f} s (the loop never stalled)")
        print(
            f"engine:        {engine.workers} workers, {stats.completed} tasks done, "
            f"{stats.timed_out} timed out, {stats.worker_restarts} worker(s) replaced"
        )


if __name__ == "__main__":
    hybrid.run(main())
