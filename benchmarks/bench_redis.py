"""Redis scale-out, side by side in one run against the local redis-server.

Run: ``.venv/bin/python -m benchmarks.bench_redis`` (``--quick`` for a short run).

1. No-op jobs end to end, one worker node of 2 processes: hybrid one-at-a-time
   (``engine.run`` per job, every job its own stream entry), hybrid batched
   (``run_batch``, 256 calls per entry), taskiq-redis's stream broker, arq (tuned), and
   raw redis-py batched XADD/XREADGROUP/XACK. Rounds are interleaved; medians are quoted.
2. Recovery: kill -9 of a node holding pending jobs, no other traffic: seconds until every
   job it held has its result from the other node (p50 and p99 over repeats).
3. Redeliveries of a live long task: a 5 s task with the lease cut to 1 s.

arq and taskiq are installed on first use into ``benchmarks/.venv-redis-baselines``
(one venv each: they need different redis-py majors), never into the project's venv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from adapters.redis import RedisEngine
from benchmarks.redis_baselines import noop_tasks

ROOT = Path(__file__).resolve().parents[1]
BASELINES = Path(__file__).resolve().parent / "redis_baselines"
VENVS = Path(__file__).resolve().parent / ".venv-redis-baselines"
PACKAGES = {"arq": ["arq", "hiredis"], "taskiq": ["taskiq", "taskiq-redis", "hiredis"]}
URL = os.environ.get("HYBRID_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SETTLE_S = 2.0  # nodes run this long before the kill (their start-up pauses widen margins)


def baseline_python(name: str) -> str:
    venv = VENVS / name
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing {name} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PACKAGES[name]], check=True)
    return str(python)


def run_program(python: str, script: str, jobs: int) -> float:
    """Jobs per second a baseline program measured."""
    out = subprocess.run(
        [python, str(BASELINES / script), URL, str(jobs)],
        check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return float(figures["jobs"]) / float(figures["seconds"])


class Node:
    """A ``hybrid worker`` subprocess in its own process group."""

    def __init__(self, prefix: str, *options: str) -> None:
        self.log = Path(tempfile.mkstemp(prefix="bench-node-", suffix=".log")[1])
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "adapters.redis", "--redis", URL, "--prefix", prefix,
                 "--import", "benchmarks.redis_baselines.noop_tasks", *options],
                cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while "ready" not in self.log.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(self.log.read_text())
            time.sleep(0.02)
        self.name = self.log.read_text().split()[2]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(60)
        text = self.log.read_text()
        self.log.unlink()
        return text


async def delete_prefix(prefix: str) -> None:
    client = aioredis.Redis.from_url(URL)
    keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def hybrid_rate(jobs: int, batched: bool) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    node = Node(prefix, "--workers", "2")
    try:
        async with RedisEngine(URL, prefix=prefix) as engine:
            await engine.run_batch(noop_tasks.noop, [(i,) for i in range(1000)])  # warm up
            started = time.perf_counter()
            if batched:
                results = await engine.run_batch(noop_tasks.noop, [(i,) for i in range(jobs)])
            else:
                results = await asyncio.gather(
                    *(engine.run(noop_tasks.noop, i) for i in range(jobs))
                )
            elapsed = time.perf_counter() - started
            assert results == list(range(jobs))
    finally:
        node.stop()
        await delete_prefix(prefix)
    return jobs / elapsed


async def holder(prefix: str, nodes: list[Node]) -> Node:
    client = aioredis.Redis.from_url(URL)
    summary = await client.xpending(f"{{{prefix}}}:jobs", "workers")
    await client.aclose()
    counts = {row["name"].decode(): row["pending"] for row in summary["consumers"]}
    return max(nodes, key=lambda node: counts.get(node.name, 0))


async def recovery_s() -> float:
    """Seconds from kill -9 of the node holding 10 jobs to their last result elsewhere."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    nodes = [Node(prefix, "--workers", "1"), Node(prefix, "--workers", "2")]
    try:
        async with RedisEngine(URL, prefix=prefix) as engine:
            await asyncio.sleep(SETTLE_S)  # both nodes beating and seen by each other
            waiting = asyncio.gather(*(engine.run(noop_tasks.pause, i, 0.05) for i in range(10)))
            await asyncio.sleep(0.1)
            victim = await holder(prefix, nodes)
            killed_at = time.perf_counter()
            victim.kill()
            await asyncio.wait_for(waiting, 60)
            return time.perf_counter() - killed_at
    finally:
        for node in nodes:
            node.kill()
        await delete_prefix(prefix)


async def long_task_redeliveries() -> int:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    nodes = [Node(prefix, "--lease", "1.0"), Node(prefix, "--lease", "1.0")]
    path = Path(tempfile.mkstemp(prefix="bench-runs-")[1])
    try:
        async with RedisEngine(URL, prefix=prefix) as engine:
            await engine.run(noop_tasks.record, str(path), 1, 5.0)
        return len(path.read_text().splitlines()) - 1
    finally:
        for node in nodes:
            node.stop()
        path.unlink()
        await delete_prefix(prefix)


def row(name: str, rates: list[float], reference: float | None) -> str:
    median = statistics.median(rates)
    ratio = f"{median / reference:6.2f}x" if reference else "     -"
    spread = ", ".join(f"{rate:,.0f}" for rate in rates)
    return f"{name:<34} {median:>12,.0f} {ratio:>9}   ({spread})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and repeats")
    args = parser.parse_args()
    rounds, recovery_repeats = (1, 5) if args.quick else (3, 20)
    single_jobs, batch_jobs, baseline_jobs = (
        (5_000, 50_000, 3_000) if args.quick else (20_000, 200_000, 10_000)
    )
    arq_python, taskiq_python = baseline_python("arq"), baseline_python("taskiq")
    systems: dict[str, Callable[[], float]] = {
        "hybrid one-at-a-time (run)": lambda: asyncio.run(hybrid_rate(single_jobs, False)),
        "hybrid batched (run_batch)": lambda: asyncio.run(hybrid_rate(batch_jobs, True)),
        "taskiq-redis stream broker": lambda: run_program(
            taskiq_python, "taskiq_noop.py", baseline_jobs
        ),
        "arq (poll 10 ms, max_jobs 1000)": lambda: run_program(
            arq_python, "arq_noop.py", baseline_jobs
        ),
        "raw redis-py XADD/XREADGROUP/XACK": lambda: run_program(
            sys.executable, "raw_streams.py", 5 * baseline_jobs
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in systems}
    for round_number in range(rounds):
        for name, measure in systems.items():
            rates[name].append(measure())
            print(f"round {round_number + 1}: {name}: {rates[name][-1]:,.0f} jobs/s", flush=True)
    taskiq = statistics.median(rates["taskiq-redis stream broker"])
    print("\nNo-op jobs end to end, one worker node of 2 processes (jobs/s, median of rounds)")
    print(f"{'system':<34} {'jobs/s':>12} {'vs taskiq':>9}   (rounds)")
    for name in systems:
        print(row(name, rates[name], taskiq))

    times = [asyncio.run(recovery_s()) for _ in range(recovery_repeats)]
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    print(f"\nkill -9 to pending jobs done elsewhere, no other traffic ({len(times)} repeats):")
    print(f"  p50 {statistics.median(times):.2f} s   p99 {p99:.2f} s   max {times[-1]:.2f} s")
    print("  baselines (their defaults, not re-measured here): taskiq-redis idle_timeout 600 s")
    print("  and only when new traffic arrives; arq 310 s (job timeout + 10 s)")
    print(f"\nredeliveries of a live 5 s task with a 1 s lease: {long_task_redeliveries_sync()}")


def long_task_redeliveries_sync() -> Any:
    return asyncio.run(long_task_redeliveries())


if __name__ == "__main__":
    main()
