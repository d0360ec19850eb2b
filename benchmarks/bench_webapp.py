"""The example web app under load: health latency and CPU throughput, side by side in one run.

    python -m benchmarks.bench_webapp              # 3 rounds of 8 s per setup (about 2.5 min)
    python -m benchmarks.bench_webapp --quick      # 1 round of 3 s per setup

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
- hybrid nice 0: hybrid with its workers at the server's own priority.

Rounds run the setups in turn (every other round in reverse order), so drift on the
(noisy, shared) machine hits all of them alike; the table quotes medians over rounds, and
ratios are per-round ratios' medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
WARMUP_S = 1.0  # load before measuring, so workers have imported the work and warmed up
REQUEST_TIMEOUT_S = 30.0
START_TIMEOUT_S = 30.0
WORKER_NICE = 10  # what "executor nice" lowers its workers' priority by (hybrid's web default)
SETUPS: dict[str, tuple[str, bool, int | None]] = {  # name: (mode, metrics, worker nice)
    "inline": ("inline", False, 0),
    "executor": ("executor", False, 0),
    "hybrid": ("hybrid", False, None),  # the app's defaults: workers at nice 10
    "hybrid+metrics": ("hybrid", True, None),
    "executor nice": ("executor", False, WORKER_NICE),  # the executor given the same priority
    "hybrid nice 0": ("hybrid", False, 0),  # hybrid with its workers at this process's priority
}


@dataclass
class Run:
    throughput_per_s: float
    health_p50_ms: float
    health_p99_ms: float
    health_polls: int
    errors: int
    parent_cpu_ms_per_request: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(
    mode: str, metrics: bool, nice: int | None, port: int
) -> subprocess.Popen[bytes]:
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


async def load(base: str, duration_s: float, scrape: bool, server_pid: int) -> Run:
    """Warm up, then measure ``duration_s`` of CPU calls and health polls."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    completed_at: list[float] = []
    errors = 0

    async def cpu_client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while True:
            async with session.get(f"{base}/cpu") as response:
                await response.read()
                if response.status == 200:
                    completed_at.append(time.perf_counter())
                else:
                    errors += 1

    async def scraper(session: aiohttp.ClientSession) -> None:
        while True:
            async with session.get(f"{base}/metrics") as response:
                await response.read()
            await asyncio.sleep(SCRAPE_INTERVAL_S)

    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as cpu_session,
        aiohttp.ClientSession(timeout=timeout) as side_session,
    ):
        await wait_until_up(side_session, base)
        workers = [asyncio.ensure_future(cpu_client(cpu_session)) for _ in range(CLIENTS)]
        if scrape:
            workers.append(asyncio.ensure_future(scraper(side_session)))
        try:
            await asyncio.sleep(WARMUP_S)
            started, cpu_before = time.perf_counter(), cpu_seconds(server_pid)
            health_ms = await poll_health(side_session, base, started + duration_s)
            ended, cpu_after = time.perf_counter(), cpu_seconds(server_pid)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    done = sum(1 for at in completed_at if started <= at <= ended)
    health_ms.sort()
    return Run(
        throughput_per_s=done / (ended - started),
        health_p50_ms=quantile(health_ms, 0.50),
        health_p99_ms=quantile(health_ms, 0.99),
        health_polls=len(health_ms),
        errors=errors,
        parent_cpu_ms_per_request=1000 * (cpu_after - cpu_before) / max(1, done),
    )


async def poll_health(session: aiohttp.ClientSession, base: str, until: float) -> list[float]:
    latencies_ms = []
    while time.perf_counter() < until:
        sent = time.perf_counter()
        async with session.get(f"{base}/health") as response:
            await response.read()
        received = time.perf_counter()
        latencies_ms.append(1000 * (received - sent))
        await asyncio.sleep(max(0.0, HEALTH_INTERVAL_S - (received - sent)))
    return latencies_ms


def quantile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def measure(setup: str, duration_s: float) -> Run:
    mode, metrics, nice = SETUPS[setup]
    port = free_port()
    server = start_server(mode, metrics, nice, port)
    try:
        return await load(f"http://127.0.0.1:{port}", duration_s, metrics, server.pid)
    finally:
        await asyncio.to_thread(stop_server, server)


def report(runs: dict[str, list[Run]]) -> None:
    def med(setup: str, field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in runs[setup]))

    def ratio(setup: str, baseline: str) -> float:
        pairs = zip(runs[setup], runs[baseline], strict=True)
        return statistics.median(a.throughput_per_s / b.throughput_per_s for a, b in pairs)

    rounds = len(next(iter(runs.values())))
    print(f"\nmedians over {rounds} round(s); {CLIENTS} clients on /cpu, /health every 10 ms")
    print(f"{'setup':<16}{'cpu req/s':>10}{'vs executor':>13}{'health p50 ms':>15}"
          f"{'health p99 ms':>15}{'parent CPU ms/req':>19}{'errors':>8}")  # fmt: skip
    for setup in runs:
        versus = f"{ratio(setup, 'executor'):.2f}x" if "executor" in runs else "-"
        print(
            f"{setup:<16}{med(setup, 'throughput_per_s'):>10.1f}{versus:>13}"
            f"{med(setup, 'health_p50_ms'):>15.2f}{med(setup, 'health_p99_ms'):>15.2f}"
            f"{med(setup, 'parent_cpu_ms_per_request'):>19.3f}{med(setup, 'errors'):>8.0f}"
        )
    if {"hybrid", "hybrid+metrics"} <= runs.keys():
        extra_ms = med("hybrid+metrics", "parent_cpu_ms_per_request") - med(
            "hybrid", "parent_cpu_ms_per_request"
        )
        cost_ms = WORK_MS + med("hybrid", "parent_cpu_ms_per_request")
        change = ratio("hybrid+metrics", "hybrid") - 1
        print(f"\nmetrics: throughput {100 * change:+.1f}% vs hybrid (noisy); parent CPU "
              f"{extra_ms:+.3f} ms/request = {100 * extra_ms / cost_ms:+.2f}% of the "
              f"{cost_ms:.1f} ms of CPU a request costs (goal < 2%)")  # fmt: skip
    if {"hybrid", "executor"} <= runs.keys():
        p99_ms, speed = med("hybrid", "health_p99_ms"), ratio("hybrid", "executor")
        print(f"hybrid health p99: {p99_ms:.2f} ms (goal < 5 ms); "
              f"hybrid / executor throughput: {speed:.2f}x (goal >= 1)")  # fmt: skip


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
        for setup in setups if number % 2 else reversed(setups):
            run = await measure(setup, duration_s)
            runs[setup].append(run)
            print(
                f"round {number} {setup:<15} {run.throughput_per_s:7.1f} req/s  "
                f"health p50 {run.health_p50_ms:7.2f} ms  p99 {run.health_p99_ms:8.2f} ms  "
                f"parent CPU {run.parent_cpu_ms_per_request:.3f} ms/req",
                flush=True,
            )
    report(runs)
    print(f"load average after: {os.getloadavg()[0]:.2f} (the machine is shared: other loads "
          "skew single runs; compare within a round)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s")
    parser.add_argument("--only", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 3.0
    hybrid.run(main(args.rounds, args.duration, args.only))
