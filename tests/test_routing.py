"""Named pools, affinity by key, resizing under load and per-worker isolation."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from pathlib import Path

import pytest

import hybrid
from tests import tasks
from tests.conftest import MakeEngine
from tests.helpers import calls_recorded, wait_for_full_strength, worker_pids

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py


async def test_named_pools_have_their_own_workers_and_limits(make_engine: MakeEngine) -> None:
    engine = await make_engine(
        workers=1, pools={"parse": hybrid.PoolSpec(workers=2, max_tasks_per_child=2)}
    )
    assert engine.pools == ("default", "parse")
    default_pids = set(worker_pids(engine))
    parse_pids = set(worker_pids_of(engine, "parse"))
    assert len(parse_pids) == 2
    assert default_pids.isdisjoint(parse_pids)
    assert await engine.run(tasks.pid_of, pool="default") in default_pids
    assert await engine.run(tasks.pid_of, pool="parse") in parse_pids
    pids = [pid async for pid in engine.map(tasks.pid_of, range(8), pool="parse")]
    assert max(pids.count(pid) for pid in set(pids)) <= 2  # recycled after two calls
    assert engine.stats("parse").completed == 9
    with pytest.raises(ValueError, match="no pool named 'render'"):
        await engine.run(tasks.pid_of, pool="render")


def worker_pids_of(engine: hybrid.Engine, pool: str) -> list[int]:
    return [w.pid for w in engine.stats(pool).per_worker if w.pid is not None]


async def test_tasks_with_the_same_key_stay_on_one_worker(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    keys = list(range(40))
    calls = [(key, engine.run(tasks.cached_lookup, key, key=key)) for key in keys * 100]
    results = await asyncio.gather(*(call for _, call in calls))
    pids_by_key: defaultdict[int, set[int]] = defaultdict(set)
    cold = 0
    for (key, _), (pid, warm) in zip(calls, results, strict=True):
        pids_by_key[key].add(pid)
        cold += not warm
    assert all(len(pids) == 1 for pids in pids_by_key.values())
    assert cold == len(keys)  # each key was cold exactly once: every later call hit its cache
    used = {next(iter(pids)) for pids in pids_by_key.values()}
    assert len(used) == 2  # keys are spread over both workers
    assert engine.bound_worker(0) in (0, 1)


async def test_a_busy_keyed_worker_does_not_hold_back_other_work(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    blocker = asyncio.ensure_future(engine.run(tasks.sleep_then, 0.5, "keyed", key="hot"))
    queued_behind = asyncio.ensure_future(engine.run(tasks.sleep_then, 0, "also keyed", key="hot"))
    await asyncio.sleep(0.1)
    unkeyed = await asyncio.wait_for(engine.run(tasks.square, 7), timeout=0.3)
    assert unkeyed == 49
    assert not queued_behind.done()
    assert await blocker == "keyed"
    assert await queued_behind == "also keyed"


async def test_growing_and_shrinking_under_load_loses_and_repeats_nothing(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    record = tmp_path / "calls"
    work = [
        asyncio.ensure_future(engine.run(tasks.sleep_then_record, 0.01, str(record), value))
        for value in range(200)
    ]
    await asyncio.sleep(0.1)
    await engine.resize(3)
    assert engine.stats().workers == 3
    await asyncio.sleep(0.1)
    await engine.resize(1)
    assert await asyncio.gather(*work) == list(range(200))
    assert calls_recorded(record) == {value: 1 for value in range(200)}
    async with asyncio.timeout(10):
        while len(engine.stats().per_worker) != 1:
            await asyncio.sleep(0.01)
    stats = engine.stats()
    assert stats.failed == stats.crashed == 0
    assert stats.completed == 200


async def test_shrinking_rebinds_keys_of_the_removed_worker(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    for key in range(10):
        await engine.run(tasks.cached_lookup, key, key=key)
    await engine.resize(1)
    async with asyncio.timeout(10):
        while len(engine.stats().per_worker) != 1:
            await asyncio.sleep(0.01)
    (pid,) = worker_pids(engine)
    results = await asyncio.gather(
        *(engine.run(tasks.cached_lookup, key, key=key) for key in range(10))
    )
    assert {result_pid for result_pid, _ in results} == {pid}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs")
async def test_workers_can_be_pinned_spread_over_the_usable_cpus(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2, pin_cpus=True)
    seen = {tuple(await engine.run(tasks.affinity_of, key=key)) for key in range(20)}
    cpus = sorted(os.sched_getaffinity(0))
    assert seen == {(cpus[0],), (cpus[1],)}


async def test_workers_can_run_at_lower_priority(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1, nice=5)
    assert await engine.run(tasks.niceness) == os.nice(0) + 5


async def test_a_hard_memory_limit_fails_only_the_offending_task(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1, memory_limit_bytes=600 * 1024 * 1024)
    (pid,) = worker_pids(engine)
    with pytest.raises(hybrid.MemoryLimitExceeded, match="600 MB") as caught:
        await engine.run(tasks.allocate, 2048)
    assert isinstance(caught.value, MemoryError)
    assert caught.value.pid == pid
    assert await engine.run(tasks.allocate, 10) == 10 * 1024 * 1024
    await wait_for_full_strength(engine)
    assert worker_pids(engine) != [pid]  # replaced: its heap may be left broken


async def test_a_worker_past_max_rss_is_recycled_after_its_task(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1, max_rss_bytes=150 * 1024 * 1024)
    (pid,) = worker_pids(engine)
    assert await engine.run(tasks.grow_and_keep, 200) == pid  # finishes: never killed for it
    async with asyncio.timeout(10):
        while worker_pids(engine) in ([pid], []):
            await asyncio.sleep(0.05)
    assert engine.stats().recycled_for_memory == 1
    assert engine.stats().failed == 0


async def test_recycling_for_memory_replaces_a_worker_once(make_engine: MakeEngine) -> None:
    # Regression: a recycle decided while a batch settled asked for the same worker's
    # replacement twice, and two restarts of one slot left it with two processes.
    engine = await make_engine(workers=1, max_rss_bytes=120 * 1024 * 1024)
    pids = [await engine.run(tasks.grow_quickly, 10) for _ in range(40)]
    stats = engine.stats()
    assert stats.recycled_for_memory >= 1
    assert stats.worker_restarts == stats.recycled_for_memory  # one restart per recycle
    # The last recycle may come after the last call, so its replacement served none of them.
    assert len(set(pids)) in (stats.recycled_for_memory, stats.recycled_for_memory + 1)
    await wait_for_full_strength(engine)
    assert len(engine.stats().per_worker) == 1
    assert await engine.run(tasks.square, 3) == 9
