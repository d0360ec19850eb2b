"""hybrid inside an application's loop: several engines, uvloop or asyncio, a responsive loop."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

import hybrid
from tests import tasks
from tests.conftest import MakeEngine
from tests.helpers import worker_pids

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py


async def test_several_engines_live_in_one_program(make_engine: MakeEngine) -> None:
    first = await make_engine(workers=1)
    second = await make_engine(workers=1)
    assert set(worker_pids(first)).isdisjoint(worker_pids(second))
    results = await asyncio.gather(first.run(tasks.square, 2), second.run(tasks.square, 3))
    assert list(results) == [4, 9]


async def test_the_loop_stays_responsive_while_workers_compute(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    lags: list[float] = []

    async def probe() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - start - 0.005)

    prober = asyncio.ensure_future(probe())
    await asyncio.gather(*(engine.run(tasks.spin, 0.05) for _ in range(20)))
    prober.cancel()
    assert len(lags) >= 20
    # A loop blocked by the CPU work would lag by whole task lengths (0.05 s) at every probe;
    # the median is immune to the odd scheduling hiccup of a busy machine.
    assert statistics.median(lags) < 0.02


def test_hybrid_run_uses_uvloop_without_touching_the_policy() -> None:
    import asyncio as aio

    policy = aio.get_event_loop_policy()

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert hybrid.run(loop_module()).startswith("uvloop")
    assert hybrid.run(loop_module(), use_uvloop=False).startswith("asyncio")
    assert aio.get_event_loop_policy() is policy


def test_usable_cpus_respects_affinity() -> None:
    import os

    assert 1 <= hybrid.usable_cpus() <= len(os.sched_getaffinity(0))
    assert hybrid.Engine().workers == hybrid.usable_cpus()
