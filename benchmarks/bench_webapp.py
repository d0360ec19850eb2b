"""The example web app under load: health latency and CPU throughput, side by side in one run.

    python -m benchmarks.bench_webapp              # 10 rounds of 3 s per setup (about 9 min)
    python -m benchmarks.bench_webapp --quick      # 2 rounds of 2 s per setup

Each setup is ``python -m examples.webapp`` in its own process on 127.0.0.1. For each:
64 clients call ``GET /cpu`` (about 20 ms of pure Python each) back to back while one
client polls ``GET /health`` every 10 ms. Setups:

- inline: the call runs in the handler, on the event loop;
- executor: ``loop.run_in_executor`` with a default ``ProcessPoolExecutor()``;
- hybrid: ``adapters.aiohttp_web.offload`` with the adapter's defaults (workers at nice
  10, so they yield a core to the process answering requests) and metrics off;
- hybrid+metrics: the same with Prometheus metrics recorded and ``/metrics`` scraped
  every second;
- executor nice: the executor with its workers at nice 10 too (is priority all it takes?);
- hybrid nice 0: hybrid with its workers at the server's own priority;
- executor again: the executor a second time, a control: the spread between two equal
  setups is the benchmark's noise floor.

The machine's speed drifts by 10-20% over tens of seconds (it is shared), and a process
can run a few percent faster or slower than an identical one for its whole life. So each
round starts a fresh server per setup, warms them all up, then loads each in turn for a
short window (every other round in reverse order): the windows compared lie seconds
apart, and no setup keeps a lucky or unlucky process across rounds. The table quotes
medians over rounds; ratios are medians of per-round ratios, with the rounds in which
hybrid was ahead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

import hybrid
from examples.webapp.work import crunch

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 64
HEALTH_INTERVAL_S = 0.01
SCRAPE_INTERVAL_S = 1.0
WORK_MS = 20.0  # CPU time of one /cpu call in a worker (examples.webapp.work.crunch)
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
WARMUP_S = 1.0  # a first unmeasured window per server: workers import the work, caches fill
RAMP_S = 0.5  # load before each measured window, so the server's queue is full
REQUEST_TIMEOUT_S = 60.0  # inline, on a slow host, answers a /cpu call after ~5 s in line
START_TIMEOUT_S = 30.0
WORKER_NICE = 10  # what "executor nice" lowers its workers' priority by (hybrid's web default)
SETUPS: dict[str, tuple[str, bool, int | None]] = {  # name: (mode, metrics, worker nice)
    "inline": ("inline", False, 0),
    "executor": ("executor", False, 0),
    "hybrid": ("hybrid", False, None),  # the app's defaults: workers at nice 10
    "hybrid+metrics": ("hybrid", True, None),
    "executor nice": ("executor", False, WORKER_NICE),  # the executor given the same priority
    "hybrid nice 0": ("hybrid", False, 0),  # hybrid with its workers at this process's priority
    "executor again": ("executor", False, 0),  # the baseline twice: how far apart equals come out
}


@dataclass
class Run:
    throughput_per_s: float
    health_p50_ms: float
    health_p99_ms: float
    health_polls: int
    errors: int
    parent_cpu_ms_per_request: float
    workers_cpu_ms_per_request: float  # every process the server started
    client_cpu_ms_per_request: float  # this process: the load and the health polls


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(mode: str, metrics: bool, nice: int | None, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "examples.webapp", "--mode", mode, "--port", str(port)]
    if nice is not None:
        command += ["--worker-nice", str(nice)]
    if not metrics:
        command.append("--no-metrics")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def wait_until_up(session: aiohttp.ClientSession, base: str) -> None:
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            try:
                async with session.get(f"{base}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def descendants_cpu_seconds(pid: int) -> float:
    """CPU time of every live process descended from ``pid`` (its workers, fork server...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError):
                continue
    family, total = {pid}, 0.0
    for child in sorted(parents):  # a child's pid is almost always above its parent's
        if parents[child] in family:
            family.add(child)
            with contextlib.suppress(OSError):
                total += cpu_seconds(child)
    return total


class Server:
    """One setup's ``python -m examples.webapp`` for one round, and the client sessions
    that load it (keep-alive: the warm-up's connections serve the measured window)."""

    def __init__(self, setup: str) -> None:
        mode, self.metrics, nice = SETUPS[setup]
        self.setup = setup
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.process = start_server(mode, self.metrics, nice, port)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        self.cpu_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CLIENTS), timeout=timeout
        )
        self.side_session = aiohttp.ClientSession(timeout=timeout)

    async def wait_until_up(self) -> None:
        await wait_until_up(self.side_session, self.base)

    async def close(self) -> None:
        await self.cpu_session.close()
        await self.side_session.close()
        await asyncio.to_thread(stop_server, self.process)


async def window(server: Server, duration_s: float, ramp_s: float = RAMP_S) -> Run:
    """Load one server: ``ramp_s`` unmeasured, then ``duration_s`` measured; then let every
    client finish its request (none is cut off: a dropped request would cost hybrid a
    worker, which it kills to stop the abandoned call)."""
    base, completed_at, errors, stopping = server.base, [], 0, False

    async def cpu_client() -> None:
        nonlocal errors
        while not stopping:
            try:
                async with server.cpu_session.get(f"{base}/cpu") as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                completed_at.append(time.perf_counter())
            else:
                errors += 1

    async def scraper() -> None:
        while not stopping:
            async with server.side_session.get(f"{base}/metrics") as response:
                await response.read()
            await asyncio.sleep(SCRAPE_INTERVAL_S)

    clients = [asyncio.ensure_future(cpu_client()) for _ in range(CLIENTS)]
    if server.metrics:
        clients.append(asyncio.ensure_future(scraper()))
    try:
        await asyncio.sleep(ramp_s)
        pid = server.process.pid
        started, before = time.perf_counter(), _cpu_now(pid)
        health_ms = await poll_health(server.side_session, base, started + duration_s)
        ended, after = time.perf_counter(), _cpu_now(pid)
    finally:
        stopping = True
        await asyncio.gather(*clients)
    done = sum(1 for at in completed_at if started <= at <= ended)
    health_ms.sort()
    return Run(
        throughput_per_s=done / (ended - started),
        health_p50_ms=quantile(health_ms, 0.50),
        health_p99_ms=quantile(health_ms, 0.99),
        health_polls=len(health_ms),
        errors=errors,
        parent_cpu_ms_per_request=1000 * (after[0] - before[0]) / max(1, done),
        workers_cpu_ms_per_request=1000 * (after[1] - before[1]) / max(1, done),
        client_cpu_ms_per_request=1000 * (after[2] - before[2]) / max(1, done),
    )


def _cpu_now(server_pid: int) -> tuple[float, float, float]:
    """CPU seconds so far of the server's process, its descendants, and this process."""
    return cpu_seconds(server_pid), descendants_cpu_seconds(server_pid), time.process_time()


async def poll_health(session: aiohttp.ClientSession, base: str, until: float) -> list[float]:
    latencies_ms = []
    while time.perf_counter() < until:
        sent = time.perf_counter()
        try:
            async with session.get(f"{base}/health") as response:
                await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            # A health check that never answers is the worst latency, not a crash.
            print(f"  health check failed after {time.perf_counter() - sent:.1f} s: {exc!r}")
        received = time.perf_counter()
        latencies_ms.append(1000 * (received - sent))
        await asyncio.sleep(max(0.0, HEALTH_INTERVAL_S - (received - sent)))
    return latencies_ms


def quantile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def report(runs: dict[str, list[Run]]) -> None:
    def med(setup: str, field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in runs[setup]))

    def ratio(setup: str, baseline: str) -> float:
        pairs = zip(runs[setup], runs[baseline], strict=True)
        # A round whose baseline served nothing (it hung) has no ratio: left out.
        ratios = [a.throughput_per_s / b.throughput_per_s for a, b in pairs if b.throughput_per_s]
        return statistics.median(ratios) if ratios else float("nan")

    def rounds_ahead(setup: str, baseline: str) -> int:
        pairs = zip(runs[setup], runs[baseline], strict=True)
        return sum(a.throughput_per_s >= b.throughput_per_s for a, b in pairs)

    rounds = len(next(iter(runs.values())))
    print(f"\nmedians over {rounds} round(s); {CLIENTS} clients on /cpu, /health every 10 ms")
    print(f"{'setup':<16}{'cpu req/s':>10}{'vs executor':>13}{'ahead':>8}{'health p50 ms':>15}"
          f"{'health p99 ms':>15}{'CPU ms/req: server':>20}{'workers':>9}{'client':>8}"
          f"{'server %':>10}{'errors':>8}")  # fmt: skip
    for setup in runs:
        versus, ahead = "-", "-"
        if "executor" in runs and setup != "executor":
            versus = f"{ratio(setup, 'executor'):.2f}x"
            ahead = f"{rounds_ahead(setup, 'executor')}/{rounds}"
        print(
            f"{setup:<16}{med(setup, 'throughput_per_s'):>10.1f}{versus:>13}{ahead:>8}"
            f"{med(setup, 'health_p50_ms'):>15.2f}{med(setup, 'health_p99_ms'):>15.2f}"
            f"{med(setup, 'parent_cpu_ms_per_request'):>20.3f}"
            f"{med(setup, 'workers_cpu_ms_per_request'):>9.2f}"
            f"{med(setup, 'client_cpu_ms_per_request'):>8.2f}"
            f"{100 * statistics.median(map(parent_share, runs[setup])):>9.2f}%"
            f"{med(setup, 'errors'):>8.0f}"
        )
    if {"hybrid", "hybrid+metrics"} <= runs.keys():
        # The machine's speed scales every process's CPU per request alike, so the parent's
        # share of a request's CPU is compared, round by round, rather than milliseconds.
        extra = statistics.median(
            parent_share(a) - parent_share(b)
            for a, b in zip(runs["hybrid+metrics"], runs["hybrid"], strict=True)
        )
        change = ratio("hybrid+metrics", "hybrid") - 1
        print(f"\nmetrics: throughput {100 * change:+.1f}% vs hybrid (noisy); the server's "
              f"share of a request's CPU {100 * extra:+.2f} points (goal < 2%)")  # fmt: skip
    if {"hybrid", "executor"} <= runs.keys():
        p99_ms, speed = med("hybrid", "health_p99_ms"), ratio("hybrid", "executor")
        wins = rounds_ahead("hybrid", "executor")
        low, high = ratio_interval(runs["hybrid"], runs["executor"])
        print(f"hybrid health p99: {p99_ms:.2f} ms (goal < 5 ms); "
              f"hybrid / executor throughput: {speed:.2f}x (95% interval {low:.2f}-{high:.2f}; "
              f"goal >= 1), hybrid ahead in {wins} of {rounds} rounds")  # fmt: skip
    if {"executor again", "executor"} <= runs.keys():
        low, high = ratio_interval(runs["executor again"], runs["executor"])
        print(f"control, executor again / executor: {ratio('executor again', 'executor'):.2f}x "
              f"(95% interval {low:.2f}-{high:.2f}): the spread of two equal setups")  # fmt: skip


def ratio_interval(
    runs: list[Run], baselines: list[Run], resamples: int = 4000
) -> tuple[float, float]:
    """A 95% bootstrap interval of the median per-round throughput ratio."""
    ratios = [a.throughput_per_s / b.throughput_per_s for a, b in zip(runs, baselines, strict=True)]
    draw = random.Random(8)  # fixed: the same rounds always give the same interval
    medians = sorted(
        statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def parent_share(run: Run) -> float:
    """The server process's part of all the CPU a request costs (server, workers, client)."""
    total = (
        run.parent_cpu_ms_per_request
        + run.workers_cpu_ms_per_request
        + run.client_cpu_ms_per_request
    )
    return run.parent_cpu_ms_per_request / total if total else 0.0


def work_call_ms() -> float:
    """How long one /cpu call takes on this machine now (about WORK_MS on an idle core)."""
    times_ms = []
    for _ in range(3):
        started = time.perf_counter()
        crunch()
        times_ms.append(1000 * (time.perf_counter() - started))
    return statistics.median(times_ms)


async def main(rounds: int, duration_s: float, setups: list[str]) -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    runs: dict[str, list[Run]] = {setup: [] for setup in setups}
    for number in range(1, rounds + 1):
        print(f"round {number}: one /cpu call takes {work_call_ms():.1f} ms here now "
              f"(~{WORK_MS:.0f} ms on an idle core)", flush=True)  # fmt: skip
        order = setups if number % 2 else setups[::-1]
        for setup, run in zip(order, await one_round(order, duration_s), strict=True):
            runs[setup].append(run)
            print(
                f"round {number} {setup:<15} {run.throughput_per_s:7.1f} req/s  "
                f"health p50 {run.health_p50_ms:7.2f} ms  p99 {run.health_p99_ms:8.2f} ms  "
                f"CPU ms/req: server {run.parent_cpu_ms_per_request:.2f} "
                f"workers {run.workers_cpu_ms_per_request:.2f} "
                f"client {run.client_cpu_ms_per_request:.2f}",
                flush=True,
            )
    report(runs)
    print(f"load average after: {os.getloadavg()[0]:.2f} (the machine is shared: other loads "
          "skew single runs; compare within a round)")  # fmt: skip


async def one_round(setups: list[str], duration_s: float) -> list[Run]:
    """Fresh servers for every setup, warmed up, then one window each, in this order."""
    servers = [Server(setup) for setup in setups]
    try:
        for server in servers:
            await server.wait_until_up()
            await window(server, WARMUP_S, ramp_s=0.0)
        return [await window(server, duration_s) for server in servers]
    finally:
        await asyncio.gather(*(server.close() for server in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds a window")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    parser.add_argument("--only", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 2, 2.0
    hybrid.run(main(args.rounds, args.duration, args.only))
