"""A pool's periodic watch over its workers: liveness from heartbeats, and memory growth."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from .. import ticks
from ..messaging.detector import DetectorConfig, FailureDetector
from . import progress
from .liveness import WorkerLiveness
from .slot_state import SlotState

if TYPE_CHECKING:
    from .pool import Pool
    from .slot import Slot

logger = logging.getLogger("hybrid")

# How often the pool looks at its workers' heartbeats. Each look costs the loop about
# 0.1 ms a worker; a hung worker is convicted after NO_PROGRESS_S anyway, so looking
# more often would only spend the CPU the workers need.
WATCH_INTERVAL_S = 0.1
RSS_EVERY_TICKS = 3  # memory is read every 3rd look (0.3 s)
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# Same-host workers: beats cost an mmap write, the clock is shared and delays are tiny,
# so they earn fast conviction quickly. They beat about twice per look, no faster.
LOCAL_DETECTOR = DetectorConfig(
    min_interval_s=0.05,
    max_interval_s=0.25,
    max_beats_per_s=20.0,
    suspect_floor_s=0.1,
    dead_floor_s=0.25,
    initial_allowance_s=1.0,
    trust_half_life_s=5.0,
    max_poll_gap_s=2.5 * WATCH_INTERVAL_S,
    stall_grace_s=0.3,
)


def rss_bytes(pid: int) -> int | None:
    """A process's resident memory from /proc (Linux); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


async def watch(pool: Pool) -> None:
    """Kill hung workers and recycle bloated ones, until cancelled."""
    tick = 0
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(ticks.until_next(loop.time(), WATCH_INTERVAL_S))
        tick += 1
        now = time.monotonic()
        for slot in list(pool.slots):
            if slot.alive and slot.pid is not None and slot.area is not None:
                check_liveness(pool, slot, now)
                progress.deliver(slot)
                if tick % RSS_EVERY_TICKS == 0:
                    check_memory(pool, slot)


def check_liveness(pool: Pool, slot: Slot, now: float) -> None:
    assert slot.pid is not None
    assert slot.area is not None
    liveness = slot.liveness
    if liveness is None or liveness.pid != slot.pid:
        liveness = slot.liveness = WorkerLiveness(FailureDetector(LOCAL_DETECTOR), slot.pid)
    count, _, monotonic_ns = slot.area.last_beat()
    liveness.observe(count, monotonic_ns / 1e9, now)
    slot.area.ask_beat_interval(liveness.detector.heartbeat_interval())
    if liveness.judge(slot.pid, now) == "hung":
        logger.warning(
            "worker %s (pid %s) stopped responding (no heartbeat, no CPU progress): killing it",
            slot.index,
            slot.pid,
        )
        pool.counters.hung += 1
        pool.kill_hung(slot)


def check_memory(pool: Pool, slot: Slot) -> None:
    limit = pool.spec.max_rss_bytes
    # A slot already on its way out is not recycled (nor counted) again.
    if limit is None or pool.rss_limit_by_policy or slot.state is not SlotState.SERVING:
        return
    if slot.pid is None:
        return
    rss = rss_bytes(slot.pid)
    if rss is not None and rss > limit:
        logger.info(
            "worker %s (pid %s) uses %d MB > max_rss_bytes %d MB: recycling it after its "
            "current batch",
            slot.index,
            slot.pid,
            rss >> 20,
            limit >> 20,
        )
        pool.counters.recycled_for_memory += 1
        pool.recycle(slot)
