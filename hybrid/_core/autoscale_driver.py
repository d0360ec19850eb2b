"""The engine's side of autoscaling: sample the machine, ask each pool's policy, act.

The policy (:mod:`hybrid.autoscale`) is pure; this module feeds it samples from a
:class:`~hybrid.resources.ResourceMonitor` on the event loop and carries out what it
decides: resize a pool, pause or resume its intake, recycle or kill a worker for memory.
Every decision is logged with its reason and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from ..autoscale import Action, AutoscaleConfig, Autoscaler, AutoscaleState, Decision, PoolLoad
from ..resources import (
    DEFAULT_SAMPLE_INTERVAL_S,
    ResourceMonitor,
    ResourceSample,
    sample_periodically,
)
from .pool import Pool
from .slot import Slot

logger = logging.getLogger("hybrid.autoscale")


class AutoscaleDriver:
    """Runs one :class:`Autoscaler` per pool from one monitor's samples."""

    def __init__(
        self,
        pools: Mapping[str, Pool],
        monitor: ResourceMonitor,
        configs: Mapping[str, AutoscaleConfig],
        interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
    ) -> None:
        self._pools = pools
        self._monitor = monitor
        self._interval_s = interval_s
        self.policies = {name: Autoscaler(configs[name]) for name in pools}
        self.last_sample: ResourceSample | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._resizes: dict[str, asyncio.Task[None]] = {}
        for pool in pools.values():
            pool.rss_limit_by_policy = True

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sampler = loop.create_task(
            sample_periodically(self._monitor, self._pids, self.consume, self._interval_s),
            name="hybrid-autoscale",
        )

    async def stop(self) -> None:
        tasks = [task for task in (self._sampler, *self._resizes.values()) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def state(self, pool: str) -> AutoscaleState:
        return self.policies[pool].state()

    def consume(self, sample: ResourceSample) -> None:
        """Hand one sample to every pool's policy and carry out its decisions."""
        self.last_sample = sample
        now = asyncio.get_running_loop().time()
        for name, pool in self._pools.items():
            if pool.closing:
                continue
            load = PoolLoad(
                workers=sum(not slot.going for slot in pool.slots),
                busy=sum(bool(slot.in_flight) for slot in pool.slots),
                queued=pool.queued,
                pids=tuple(slot.pid for slot in pool.slots if slot.alive and slot.pid),
            )
            for decision in self.policies[name].decide(sample, load, now):
                logger.info("pool %s: %s [%s]", name, decision.reason, decision.key)
                self._act(name, pool, decision)

    def _pids(self) -> list[int]:
        # Every pool's workers: one pool's "outside" CPU must not include another's.
        return [
            slot.pid
            for pool in self._pools.values()
            for slot in pool.slots
            if slot.alive and slot.pid is not None
        ]

    def _act(self, name: str, pool: Pool, decision: Decision) -> None:
        action = decision.action
        if action in (Action.GROW, Action.SHRINK) and decision.workers is not None:
            self._resize(name, pool, decision.workers)
        elif action is Action.PAUSE:
            pool.pause(decision.reason)
        elif action is Action.RESUME:
            pool.resume()
        elif action is Action.RECYCLE:
            slot = _slot_of(pool, decision.pid)
            if slot is not None:
                pool.counters.recycled_for_memory += 1
                pool.recycle(slot)
        elif action is Action.KILL:
            slot = _slot_of(pool, decision.pid)
            if slot is not None:
                pool.kill_for_memory(slot)

    def _resize(self, name: str, pool: Pool, workers: int) -> None:
        running = self._resizes.get(name)
        if running is not None and not running.done():
            return  # the policy's cool-down keeps these apart; never two at once
        self._resizes[name] = asyncio.get_running_loop().create_task(
            pool.resize(workers), name=f"hybrid-resize-{name}"
        )


def _slot_of(pool: Pool, pid: int | None) -> Slot | None:
    return next((slot for slot in pool.slots if slot.alive and slot.pid == pid), None)
