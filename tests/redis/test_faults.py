"""Faults against real processes and a real Redis: after each, every job has exactly one
result and none is lost. Extra executions (at-least-once) are counted and printed."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.redis import JobRejected, RedisEngine

from . import tasks
from .conftest import Node, PrivateRedis, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

RESULT_WAIT_S = 60.0


def executions(path: Path) -> Counter[int]:
    """How many times each job started, from the lines ``tasks.record`` wrote."""
    if not path.exists():
        return Counter()
    return Counter(int(line.split()[0]) for line in path.read_text().splitlines())


def report(name: str, engine: RedisEngine, runs: Counter[int], jobs: int) -> None:
    stats = engine.stats()
    print(
        f"\n[{name}] jobs={jobs} duplicate_results={stats['duplicate_results']} "
        f"extra_executions={sum(runs.values()) - jobs} resubmitted={stats['resubmitted']}"
    )


async def submit(
    engine: RedisEngine, path: Path, jobs: int, seconds: float
) -> asyncio.Future[list[int]]:
    return asyncio.gather(*(engine.run(tasks.record, str(path), i, seconds) for i in range(jobs)))


async def holder_of_pending(url: str, prefix: str, nodes: list[Node]) -> Node:
    """The node holding the most pending entries right now."""
    client = aioredis.Redis.from_url(url)
    try:
        summary = await client.xpending(f"{{{prefix}}}:jobs", "workers")
    finally:
        await client.aclose()
    counts = {consumer["name"].decode(): consumer["pending"] for consumer in summary["consumers"]}
    return max(nodes, key=lambda node: counts.get(node.name, 0))


async def test_kill_9_of_a_node_mid_batch_loses_nothing(
    each_redis: PrivateRedis, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    url = each_redis.url  # 7.0 and 8.2: claimed entries are acked with XACK or XACKDEL
    nodes = [start_node(url=url), start_node(url=url)]
    path, jobs = tmp_path / "runs.txt", 40
    async with RedisEngine(url, prefix=prefix) as engine:
        results = await submit(engine, path, jobs, 0.1)
        await wait_until(lambda: sum(executions(path).values()) >= 5)
        victim = await holder_of_pending(url, prefix, nodes)
        victim.signal_group(signal.SIGKILL)
        assert await asyncio.wait_for(results, RESULT_WAIT_S) == list(range(jobs))
        runs = executions(path)
        assert set(runs) == set(range(jobs))
        assert engine.stats()["duplicate_results"] == 0
        report("kill -9", engine, runs, jobs)


async def test_a_stopped_node_s_work_is_taken_and_its_late_results_dropped(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    nodes = [start_node(), start_node()]
    path, jobs = tmp_path / "runs.txt", 20
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        results = await submit(engine, path, jobs, 0.2)
        await wait_until(lambda: sum(executions(path).values()) >= 2)
        victim = await holder_of_pending(redis_url, prefix, nodes)
        victim.signal_group(signal.SIGSTOP)
        assert await asyncio.wait_for(results, RESULT_WAIT_S) == list(range(jobs))
        victim.signal_group(signal.SIGCONT)
        await asyncio.sleep(1.5)  # the woken node finishes what it held, and must not store it
        assert victim.stop() == 0
        assert engine.stats()["duplicate_results"] == 0
        report("SIGSTOP", engine, executions(path), jobs)
    assert victim.counters()["completed"] < jobs


async def test_redis_restarted_mid_run_loses_nothing(
    private_redis: PrivateRedis, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    private_redis.start()
    start_node(url=private_redis.url)
    path, jobs = tmp_path / "runs.txt", 30
    async with RedisEngine(private_redis.url, prefix=start_node.__self__.prefix) as engine:  # type: ignore[attr-defined]
        results = await submit(engine, path, jobs, 0.05)
        await wait_until(lambda: sum(executions(path).values()) >= 5)
        private_redis.stop()
        await asyncio.sleep(0.5)
        private_redis.start()
        assert await asyncio.wait_for(results, RESULT_WAIT_S) == list(range(jobs))
        assert engine.stats()["restarts_seen"] >= 1
        assert engine.stats()["duplicate_results"] == 0
        report("Redis restart", engine, executions(path), jobs)


async def test_a_node_started_before_redis_serves_once_it_is_up(
    private_redis: PrivateRedis, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    node = start_node(url=private_redis.url, wait=False)
    await wait_until(lambda: "waiting for Redis at" in node.text())  # it says why it idles
    assert node.process.poll() is None
    assert "ready" not in node.text()  # "ready" means consuming
    private_redis.start()
    async with RedisEngine(private_redis.url, prefix=start_node.__self__.prefix) as engine:  # type: ignore[attr-defined]
        assert await asyncio.wait_for(
            engine.run_batch(tasks.add, [(i, i) for i in range(10)]), RESULT_WAIT_S
        ) == [2 * i for i in range(10)]
    assert "ready" in node.text()
    assert node.stop() == 0


async def test_a_live_long_task_keeps_its_lease(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    # The lease is shortened to 1 s: the 4 s task outlives it four times over.
    nodes = [start_node("--lease", "1.0"), start_node("--lease", "1.0")]
    path = tmp_path / "runs.txt"
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        assert await asyncio.wait_for(engine.run(tasks.record, str(path), 1, 4.0), 30) == 1
        report("live long task", engine, executions(path), 1)
    assert executions(path) == Counter({1: 1})
    for node in nodes:
        assert node.stop() == 0
        assert node.counters()["claimed"] == 0


async def test_sigterm_drain_finishes_held_work_and_exits_0(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    node = start_node()
    path, jobs = tmp_path / "runs.txt", 6
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        results = await submit(engine, path, jobs, 0.2)
        await wait_until(lambda: sum(executions(path).values()) >= 1)
        node.process.terminate()
        assert await asyncio.wait_for(results, RESULT_WAIT_S) == list(range(jobs))
    assert node.process.wait(30) == 0
    assert node.counters()["completed"] == jobs
    assert executions(path) == Counter(range(jobs))


async def test_sigterm_drain_hands_back_what_it_cannot_finish(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    leaving = start_node("--drain-timeout", "0.2")
    path, jobs = tmp_path / "runs.txt", 4
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        results = await submit(engine, path, jobs, 1.0)
        await wait_until(lambda: sum(executions(path).values()) >= 1)
        start_node()
        leaving.process.terminate()
        assert leaving.process.wait(30) == 0
        assert await asyncio.wait_for(results, RESULT_WAIT_S) == list(range(jobs))
        assert engine.stats()["duplicate_results"] == 0
        report("SIGTERM hand-back", engine, executions(path), jobs)
    assert leaving.counters()["handed_back"] >= 1


async def test_a_handed_back_job_counts_a_delivery(
    each_redis: PrivateRedis, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    # Regression: the copy a draining node put back started at one delivery again, so a
    # job that kept outliving every node's drain was never dead-lettered.
    leaving = start_node("--drain-timeout", "0.1", url=each_redis.url)
    path = tmp_path / "runs.txt"
    admin = aioredis.Redis.from_url(each_redis.url)
    async with RedisEngine(each_redis.url, prefix=prefix) as engine:
        result = asyncio.ensure_future(engine.run(tasks.record, str(path), 1, 3.0))
        await wait_until(lambda: sum(executions(path).values()) >= 1)
        leaving.process.terminate()
        assert leaving.process.wait(30) == 0
        assert leaving.counters()["handed_back"] == 1
        newest: Any = await admin.xrevrange(f"{{{prefix}}}:jobs", count=1)
        ((_, copy),) = newest
        assert copy[b"n"] == b"1"  # its first entry's one delivery
        start_node("--max-deliveries", "1", url=each_redis.url)
        with pytest.raises(JobRejected, match=r"delivered 2 times \(max_deliveries=1\)"):
            await asyncio.wait_for(result, RESULT_WAIT_S)
    await admin.aclose()


async def test_a_job_whose_lease_moved_is_stopped_where_it_ran(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    nodes = [start_node(), start_node()]
    started, ended = tmp_path / "started.txt", tmp_path / "ended.txt"
    async with RedisEngine(redis_url, prefix=prefix) as engine:
        first = asyncio.create_task(engine.run(tasks.record, str(started), 1, 0.0))
        assert await asyncio.wait_for(first, RESULT_WAIT_S) == 1
        call = asyncio.create_task(engine.run(tasks.record_end, str(ended), 2, 3.0))
        await wait_until(lambda: engine.stats()["submitted"] == 2)
        await asyncio.sleep(0.5)  # the job is running on one node
        victim = await holder_of_pending(redis_url, prefix, nodes)
        victim.signal_group(signal.SIGSTOP)  # the whole host: node and its workers
        await wait_until(lambda: "took 1 entries" in "".join(n.text() for n in nodes), 20)
        victim.signal_group(signal.SIGCONT)  # 2.5 s of the job left on the old owner
        assert await asyncio.wait_for(call, RESULT_WAIT_S) == 2
        await wait_until(lambda: "lease lost to another node" in victim.text(), 10)
        await asyncio.sleep(3.0)  # long enough for the old owner to have finished it
        assert victim.stop() == 0
    assert ended.read_text().count("2 ") == 1  # its side effect happened once
    line = next(line for line in victim.text().splitlines() if "lease lost" in line)
    assert "stopped 1 of its calls here" in line


async def test_a_redis_restart_with_persistence_reruns_nothing(
    private_redis: PrivateRedis, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    private_redis.options = (
        "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path),
    )  # fmt: skip
    private_redis.start()
    start_node(url=private_redis.url)
    path, jobs = tmp_path / "runs.txt", 40
    async with RedisEngine(private_redis.url, prefix=start_node.__self__.prefix) as engine:  # type: ignore[attr-defined]
        results = await submit(engine, path, jobs, 0.05)
        await wait_until(lambda: sum(executions(path).values()) >= 8)
        private_redis.stop()  # SIGKILL; every write was fsynced
        private_redis.start()
        assert await asyncio.wait_for(results, RESULT_WAIT_S) == list(range(jobs))
        assert engine.stats()["restarts_seen"] >= 1
        assert engine.stats()["resubmitted"] == 0
        runs = executions(path)
        report("Redis restart with persistence", engine, runs, jobs)
    assert sum(runs.values()) - jobs <= 1  # at most the call running at the kill, again
