"""A pool's periodic watch over its workers: memory growth now, liveness later."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._pool import Pool

logger = logging.getLogger("hybrid")

WATCH_INTERVAL_S = 0.25  # how often the pool looks at its workers
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int) -> int | None:
    """A process's resident memory from /proc (Linux); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


async def watch(pool: Pool) -> None:
    """Recycle workers that grew past the pool's ``max_rss_bytes``, until cancelled."""
    limit = pool.spec.max_rss_bytes
    while True:
        await asyncio.sleep(WATCH_INTERVAL_S)
        if limit is None:
            continue
        for slot in pool.slots:
            if not slot.alive or slot.retiring or slot.pid is None:
                continue
            rss = rss_bytes(slot.pid)
            if rss is not None and rss > limit:
                logger.info(
                    "worker %s (pid %s) uses %d MB > max_rss_bytes %d MB: recycling it after "
                    "its current batch",
                    slot.index,
                    slot.pid,
                    rss >> 20,
                    limit >> 20,
                )
                pool.counters.recycled_for_memory += 1
                pool.recycle(slot)
