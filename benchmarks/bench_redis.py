"""Redis scale-out, side by side in one run against the local redis-server.

Run: ``.venv/bin/python -m benchmarks.bench_redis`` (``--quick`` for a short run).

1. No-op jobs end to end, one worker node of 2 processes: hybrid one-at-a-time
   (``engine.run`` per job, every job its own stream entry), hybrid batched
   (``run_batch``, 256 calls per entry), taskiq-redis's stream broker, arq (tuned), and
   raw redis-py batched XADD/XREADGROUP/XACK. Rounds are interleaved; medians are quoted.
   The two hybrid rows run once more on a private Redis 8.2 (``.ci/newer-redis.sh``),
   where finished entries are acknowledged and deleted with ``XACKDEL``.
2. Recovery: kill -9 of a node holding pending jobs, no other traffic: seconds until every
   job it held has its result from the other node (p50 and p99 over repeats), once with
   both nodes consuming ("ready") for 2 s, once killed 0.6 s after that (its peer has
   barely met it).
3. Redeliveries of a live long task: a 5 s task with the lease cut to 1 s.
4. A Redis restart with persistence (appendonly, fsync always) under 1,500 jobs: jobs
   lost, and jobs run twice (the goal: 0 lost, at most 1%).

The hybrid rows run once more with a cluster secret (``signed``): every job, result and
beat HMAC-signed, job ids random, replay protection on.

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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
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
SETTLE_S = (2.0, 0.6)  # nodes run this long before the kill (start-up pauses widen margins)
SECRET = "bench-secret-0123456789abcdef"  # the signed rows' cluster key
RESTART_JOBS = 1500


def baseline_python(name: str) -> str:
    venv = VENVS / name
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing {name} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PACKAGES[name]], check=True)
    return str(python)


@contextlib.contextmanager
def newer_redis() -> Iterator[str | None]:
    """A private Redis 8.2 (``.ci/newer-redis.sh``) on a free port: its URL, or None."""
    fetched = subprocess.run(
        ["bash", str(ROOT / ".ci/newer-redis.sh")], capture_output=True, text=True, cwd=ROOT
    )
    if fetched.returncode != 0:
        print(f"no Redis 8.2 rows: {fetched.stderr.strip()[-300:]}")
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(ROOT / fetched.stdout.strip()), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait()


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

    def __init__(
        self, prefix: str, *options: str, url: str = URL, secret: str | None = None
    ) -> None:
        self.log = Path(tempfile.mkstemp(prefix="bench-node-", suffix=".log")[1])
        env = {**os.environ, **({"HYBRID_SECRET": secret} if secret else {})}
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "adapters.redis", "--redis", url, "--prefix", prefix,
                 "--import", "benchmarks.redis_baselines.noop_tasks", *options],
                cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                env=env,
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


async def delete_prefix(prefix: str, url: str = URL) -> None:
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def hybrid_rate(jobs: int, batched: bool, url: str = URL, secret: str | None = None) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    node = Node(prefix, "--workers", "2", url=url, secret=secret)
    try:
        async with RedisEngine(url, prefix=prefix, secret=secret) as engine:
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
        await delete_prefix(prefix, url)
    return jobs / elapsed


async def holder(prefix: str, nodes: list[Node]) -> Node:
    client = aioredis.Redis.from_url(URL)
    summary = await client.xpending(f"{{{prefix}}}:jobs", "workers")
    await client.aclose()
    counts = {row["name"].decode(): row["pending"] for row in summary["consumers"]}
    return max(nodes, key=lambda node: counts.get(node.name, 0))


async def recovery_s(settle_s: float) -> float:
    """Seconds from kill -9 of the node holding 10 jobs to their last result elsewhere."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    nodes = [Node(prefix, "--workers", "1"), Node(prefix, "--workers", "2")]
    try:
        async with RedisEngine(URL, prefix=prefix) as engine:
            await asyncio.sleep(settle_s)  # both nodes beating and seen by each other
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
    parser.add_argument(
        "--recovery-only", action="store_true", help="only the kill -9 recovery figures"
    )
    parser.add_argument("--repeats", type=int, default=None, help="recovery repeats per case")
    args = parser.parse_args()
    if not args.recovery_only:
        throughput(args.quick)
    recovery(args.repeats or (5 if args.quick else 20))
    if not args.recovery_only:
        print(
            f"\nredeliveries of a live 5 s task with a 1 s lease: {long_task_redeliveries_sync()}"
        )
        lost, twice = asyncio.run(restart_reruns())
        print(
            f"\nRedis restart (appendonly, fsync always) under {RESTART_JOBS} jobs: "
            f"{lost} lost, {twice} run twice ({100 * twice / RESTART_JOBS:.1f}%; goal 0 lost, "
            "<= 1%)"
        )


def throughput(quick: bool) -> None:
    with newer_redis() as newer_url:
        measure_throughput(quick, newer_url)


def measure_throughput(quick: bool, newer_url: str | None) -> None:
    rounds = 1 if quick else 3
    single_jobs, batch_jobs, baseline_jobs = (
        (5_000, 50_000, 3_000) if quick else (20_000, 200_000, 10_000)
    )
    arq_python, taskiq_python = baseline_python("arq"), baseline_python("taskiq")
    systems: dict[str, Callable[[], float]] = {
        "hybrid one-at-a-time (run)": lambda: asyncio.run(hybrid_rate(single_jobs, False)),
        "hybrid batched (run_batch)": lambda: asyncio.run(hybrid_rate(batch_jobs, True)),
        "hybrid one-at-a-time, signed": lambda: asyncio.run(
            hybrid_rate(single_jobs, False, secret=SECRET)
        ),
        "hybrid batched, signed": lambda: asyncio.run(hybrid_rate(batch_jobs, True, secret=SECRET)),
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
    if newer_url is not None:  # the XACKDEL path; every other row runs on the 7.0 server
        newer = {
            "hybrid one-at-a-time, Redis 8.2": lambda: asyncio.run(
                hybrid_rate(single_jobs, False, newer_url)
            ),
            "hybrid batched, Redis 8.2": lambda: asyncio.run(
                hybrid_rate(batch_jobs, True, newer_url)
            ),
        }
        systems = {**dict(list(systems.items())[:4]), **newer, **dict(list(systems.items())[4:])}
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


def recovery(repeats: int) -> None:
    times: dict[float, list[float]] = {settle_s: [] for settle_s in SETTLE_S}
    for _ in range(repeats):  # interleaved: both cases see the same machine load
        for settle_s in SETTLE_S:
            times[settle_s].append(asyncio.run(recovery_s(settle_s)))
    print(f"\nkill -9 to pending jobs done elsewhere, no other traffic ({repeats} repeats each):")
    print(f"{'nodes up before the kill':<26} {'p50':>7} {'p99':>7} {'max':>7}   goal p99 <= 1 s")
    for settle_s, figures in times.items():
        figures.sort()
        p99 = figures[min(len(figures) - 1, int(0.99 * len(figures)))]
        median = statistics.median(figures)
        met = "met" if p99 <= 1.0 else "NOT met"
        print(
            f"{settle_s:>5.1f} s{'':<20} {median:>6.2f}s {p99:>6.2f}s {figures[-1]:>6.2f}s   {met}"
        )
    print("  baselines (their defaults, not re-measured here): taskiq-redis idle_timeout 600 s")
    print("  and only when new traffic arrives; arq 310 s (job timeout + 10 s)")


def long_task_redeliveries_sync() -> Any:
    return asyncio.run(long_task_redeliveries())




async def restart_reruns() -> tuple[int, int]:
    """Kill -9 and restart a persistent Redis a third of the way through 1,500 jobs:
    how many jobs were lost, and how many ran twice."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = Path(tempfile.mkdtemp(prefix="bench-aof-"))
    url = f"redis://127.0.0.1:{port}/0"
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "yes", "--appendfsync", "always", "--dir", str(data)]  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return server
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    server = start()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    runs = data / "runs.txt"
    node = Node(prefix, "--workers", "2", url=url)
    try:
        async with RedisEngine(url, prefix=prefix) as engine:
            calls = [
                asyncio.ensure_future(engine.run(noop_tasks.record, str(runs), i, 0.002))
                for i in range(RESTART_JOBS)
            ]
            while not runs.exists() or len(runs.read_text().splitlines()) < RESTART_JOBS // 3:
                await asyncio.sleep(0.01)
            server.kill()
            server.wait()
            server = start()
            done = await asyncio.wait_for(
                asyncio.gather(*calls, return_exceptions=True), timeout=300
            )
        lost = sum(1 for value, i in zip(done, range(RESTART_JOBS), strict=True) if value != i)
        counts: dict[str, int] = {}
        for line in runs.read_text().splitlines():
            counts[line] = counts.get(line, 0) + 1
        return lost, sum(1 for count in counts.values() if count > 1)
    finally:
        node.kill()
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
