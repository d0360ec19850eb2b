"""The FastAPI example under load: health-check latency while the workers are saturated.

    python -m benchmarks.bench_fastapi              # 6 rounds of 3 s per setup
    python -m benchmarks.bench_fastapi --quick      # 2 rounds of 2 s per setup

Each setup is ``python -m examples.webapp.fastapi_app`` (uvicorn) in its own process on
127.0.0.1: 64 clients call ``GET /cpu`` (about 20 ms of pure Python each) back to back
while one client polls ``GET /health`` every 10 ms. Setups:

- executor: a plain FastAPI app calling ``loop.run_in_executor`` on a default
  ``ProcessPoolExecutor()``;
- hybrid: ``adapters.starlette.offload`` with the adapter's defaults (workers at nice 10),
  metrics on but not scraped;
- executor again: the executor a second time, a control: the spread between two equal
  setups is the benchmark's noise floor.

Rounds, windows and the report are ``benchmarks.bench_webapp``'s (see its docstring for
why each round starts fresh servers and alternates their order). Goal: hybrid's health
p99 under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

import aiohttp

import hybrid

from . import bench_webapp
from .bench_webapp import (
    CLIENTS,
    REQUEST_TIMEOUT_S,
    ROOT,
    WARMUP_S,
    Run,
    free_port,
    report,
    stop_server,
    wait_until_up,
    window,
    work_call_ms,
)

SETUPS = {"executor": "executor", "hybrid": "hybrid", "executor again": "executor"}


class Server:
    """One setup's FastAPI app for one round, and the client sessions that load it."""

    metrics = False  # nothing scrapes /metrics during a window

    def __init__(self, setup: str) -> None:
        port = free_port()
        self.setup = setup
        self.base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "examples.webapp.fastapi_app", "--port", str(port)]
        self.process = subprocess.Popen(
            [*command, "--mode", SETUPS[setup]],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
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


async def one_round(setups: list[str], duration_s: float) -> list[Run]:
    servers = [Server(setup) for setup in setups]
    try:
        for server in servers:
            await server.wait_until_up()
            await window(server, WARMUP_S, ramp_s=0.0)  # type: ignore[arg-type]
        return [await window(server, duration_s) for server in servers]  # type: ignore[arg-type]
    finally:
        await asyncio.gather(*(server.close() for server in servers))


async def main(rounds: int, duration_s: float, setups: list[str]) -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    runs: dict[str, list[Run]] = {setup: [] for setup in setups}
    for number in range(1, rounds + 1):
        print(f"round {number}: one /cpu call takes {work_call_ms():.1f} ms here now", flush=True)
        order = setups if number % 2 else setups[::-1]
        for setup, run in zip(order, await one_round(order, duration_s), strict=True):
            runs[setup].append(run)
            print(
                f"round {number} {setup:<15} {run.throughput_per_s:7.1f} req/s  "
                f"health p50 {run.health_p50_ms:7.2f} ms  p99 {run.health_p99_ms:8.2f} ms  "
                f"errors {run.errors}",
                flush=True,
            )
    report(runs)
    print(f"load average after: {os.getloadavg()[0]:.2f} (the machine is shared)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds (default: %(default)s)")
    parser.add_argument(
        "--duration", type=float, default=3.0, help="measured seconds a window (default: 3)"
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    parser.add_argument("--only", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 2, 2.0
    assert bench_webapp.HEALTH_INTERVAL_S == 0.01  # the docstring's "every 10 ms"
    hybrid.run(main(args.rounds, args.duration, args.only))
