"""The core engine against the standard library, side by side in one run.

    python -m benchmarks.bench_engine            # full run (a few minutes on 2 cores)
    python -m benchmarks.bench_engine --quick    # smoke run
    python -m benchmarks.bench_engine --flood    # only 1,000 clients flooding engine.run

Figures are medians over repeats; ratios compare runs made minutes apart on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import hybrid
from benchmarks import work

TIMEOUT_S = 0.05  # timeout of the doomed task in the recovery benchmark


def median_rate(samples: list[float]) -> float:
    return statistics.median(samples)


def timed_rate(calls: int, seconds: float) -> float:
    return calls / seconds


async def stdlib_one_call_each(calls: int, workers: int) -> float:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(workers) as executor:
        await asyncio.gather(*(loop.run_in_executor(executor, work.square, n) for n in range(50)))
        started = time.perf_counter()
        await asyncio.gather(
            *(loop.run_in_executor(executor, work.square, n) for n in range(calls))
        )
        return timed_rate(calls, time.perf_counter() - started)


async def stdlib_chunked_map(calls: int, workers: int) -> float:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(workers) as executor:
        list(executor.map(work.square, range(100)))
        started = time.perf_counter()
        chunk = max(1, calls // 8)
        await loop.run_in_executor(
            None, lambda: list(executor.map(work.square, range(calls), chunksize=chunk))
        )
        return timed_rate(calls, time.perf_counter() - started)


async def hybrid_map(calls: int, workers: int) -> float:
    async with hybrid.Engine(workers) as engine:
        [_ async for _ in engine.map(work.square, range(1000))]
        started = time.perf_counter()
        count = 0
        async for _ in engine.map(work.square, range(calls)):
            count += 1
        assert count == calls
        return timed_rate(calls, time.perf_counter() - started)


async def hybrid_concurrent_run(calls: int, workers: int, concurrency: int = 1000) -> float:
    async with hybrid.Engine(workers) as engine:
        await asyncio.gather(*(engine.run(work.square, n) for n in range(1000)))
        remaining = iter(range(calls))

        async def client() -> None:
            for n in remaining:
                await engine.run(work.square, n)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return timed_rate(calls, time.perf_counter() - started)


class LagProbe:
    """Measures the loop's lag: how late a 1 ms sleep wakes, over and over, until stopped."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lags_ms.append((time.perf_counter() - start - 0.001) * 1000)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.ensure_future(self._probe())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def flood(
    clients: int, calls: int, call: Callable[[int], Awaitable[object]]
) -> tuple[float, list[float]]:
    """``clients`` coroutines, each awaiting ``call`` in a loop until ``calls`` are done:
    calls/s and the loop's lags meanwhile. Never one gather over every call."""
    remaining = iter(range(calls))

    async def client() -> None:
        for n in remaining:
            await call(n)

    with LagProbe() as probe:
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return timed_rate(calls, elapsed), probe.lags_ms


async def stdlib_flood(clients: int, calls: int, workers: int) -> tuple[float, list[float]]:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(workers) as executor:
        await asyncio.gather(*(loop.run_in_executor(executor, work.square, n) for n in range(50)))
        return await flood(clients, calls, lambda n: loop.run_in_executor(executor, work.square, n))


async def hybrid_flood(clients: int, calls: int, workers: int) -> tuple[float, list[float]]:
    # monitor=None: the engine itself is measured, not its reaction to a shared machine.
    async with hybrid.Engine(workers, monitor=None) as engine:
        await asyncio.gather(*(engine.run(work.square, n) for n in range(1000)))
        return await flood(clients, calls, lambda n: engine.run(work.square, n))


async def cpu_bound_efficiency(
    workers: int, tasks: int, task_s: float
) -> tuple[float, list[float]]:
    """Throughput as a fraction of workers / task time, and the loop lags seen meanwhile."""
    async with hybrid.Engine(workers) as engine:
        await engine.run(work.spin, 0.01)
        lags: list[float] = []

        async def probe() -> None:
            while True:
                start = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - start - 0.001)

        prober = asyncio.ensure_future(probe())
        started = time.perf_counter()
        await asyncio.gather(*(engine.run(work.spin, task_s) for _ in range(tasks)))
        elapsed = time.perf_counter() - started
        prober.cancel()
        ideal = tasks * task_s / workers
        return ideal / elapsed, lags


async def recovery_times(start_method: str, repeats: int, how: str) -> list[float]:
    """Seconds from a worker's death (crash or timeout kill) to its replacement running a task."""
    samples = []
    with tempfile.TemporaryDirectory() as folder:
        stamp = Path(folder) / "died_at"
        async with hybrid.Engine(1, start_method=start_method) as engine:
            for _ in range(repeats):
                submitted_at = time.monotonic()
                if how == "crash":
                    doomed = asyncio.ensure_future(engine.run(work.stamp_then_exit, str(stamp)))
                else:
                    doomed = asyncio.ensure_future(engine.run(work.sleep, 10, timeout=TIMEOUT_S))
                follower = asyncio.ensure_future(engine.run(work.monotonic_now))
                try:
                    await doomed
                except (hybrid.WorkerCrashed, hybrid.TaskTimeout):
                    # The timeout kill fires TIMEOUT_S after dispatch, which is at submission here.
                    died_at = (
                        float(stamp.read_text()) if how == "crash" else submitted_at + TIMEOUT_S
                    )
                served_at = await follower
                samples.append(served_at - died_at)
    return samples


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def interleaved(
    times: int, benches: dict[str, Callable[[], Awaitable[float]]]
) -> dict[str, float]:
    """Median of each bench over rounds that run every bench once, so noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in benches}
    for _ in range(times):
        for name, bench in benches.items():
            samples[name].append(await bench())
    return {name: median_rate(values) for name, values in samples.items()}


async def main(quick: bool) -> None:
    workers = 2
    calls = 20_000 if quick else 100_000
    baseline_calls = 5_000 if quick else 20_000
    repeats = 1 if quick else 5
    print(
        f"# hybrid engine benchmark: {workers} workers, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, loop {type(asyncio.get_running_loop()).__module__}"
    )
    print()
    rates = await interleaved(
        repeats,
        {
            "one_each": lambda: stdlib_one_call_each(baseline_calls, workers),
            "chunked": lambda: stdlib_chunked_map(calls, workers),
            "mapped": lambda: hybrid_map(calls, workers),
            "concurrent": lambda: hybrid_concurrent_run(calls, workers),
        },
    )
    one_each, chunked = rates["one_each"], rates["chunked"]
    mapped, concurrent = rates["mapped"], rates["concurrent"]
    print(f"## Tiny tasks (x*x): calls/s, median of {repeats}")
    print()
    print("| runner | calls/s | vs one call each | vs chunked map |")
    print("|---|---:|---:|---:|")
    for name, rate in [
        ("stdlib run_in_executor, one call each", one_each),
        ("stdlib ProcessPoolExecutor.map(chunksize=n/8)", chunked),
        ("hybrid engine.map (ordered, bounded)", mapped),
        ("hybrid engine.run, 1,000 concurrent", concurrent),
    ]:
        print(f"| {name} | {rate:,.0f} | {rate / one_each:.1f}x | {rate / chunked:.2f}x |")
    print()

    print_flood(*await flood_rounds(repeats, workers, calls, baseline_calls))

    task_s = 0.02
    efficiency, lags = await cpu_bound_efficiency(workers, 40 if quick else 200, task_s)
    lags_ms = [lag * 1000 for lag in lags]
    print(f"## CPU-bound tasks ({task_s * 1000:.0f} ms of pure Python each)")
    print()
    print(f"- throughput: {efficiency:.1%} of workers / task time")
    print(
        f"- event-loop lag while saturated: p50 {percentile(lags_ms, 0.5):.2f} ms, "
        f"p99 {percentile(lags_ms, 0.99):.2f} ms, max {max(lags_ms):.2f} ms "
        f"({len(lags_ms)} probes)"
    )
    print()

    print("## Recovery: worker death to replacement serving (ms)")
    print()
    print("| start method | how | p50 | p99 | max |")
    print("|---|---|---:|---:|---:|")
    for method in ("fork", "forkserver", "spawn"):
        for how in ("crash", "timeout"):
            count = 5 if quick else (30 if method != "spawn" else 10)
            samples = [s * 1000 for s in await recovery_times(method, count, how)]
            print(
                f"| {method} | {how} | {percentile(samples, 0.5):.1f} | "
                f"{percentile(samples, 0.99):.1f} | {max(samples):.1f} |"
            )


FLOOD_CLIENTS = 1000  # concurrent client coroutines, each awaiting one call at a time


async def flood_rounds(
    repeats: int, workers: int, calls: int, baseline_calls: int
) -> tuple[float, list[float], float, list[float]]:
    """Both floods, interleaved: median rates and every lag seen."""
    ours_rates: list[float] = []
    theirs_rates: list[float] = []
    ours_lags: list[float] = []
    theirs_lags: list[float] = []
    for _ in range(repeats):
        rate, lags = await stdlib_flood(FLOOD_CLIENTS, baseline_calls, workers)
        theirs_rates.append(rate)
        theirs_lags += lags
        rate, lags = await hybrid_flood(FLOOD_CLIENTS, calls, workers)
        ours_rates.append(rate)
        ours_lags += lags
    return median_rate(ours_rates), ours_lags, median_rate(theirs_rates), theirs_lags


def print_flood(
    ours: float, ours_lags: list[float], theirs: float, theirs_lags: list[float]
) -> None:
    print(f"## Flood: {FLOOD_CLIENTS:,} clients each awaiting one tiny call at a time")
    print()
    print("| runner | calls/s | ratio | lag p50 ms | lag p99 ms | lag max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rate, lags in [
        ("stdlib run_in_executor", theirs, theirs_lags),
        ("hybrid engine.run", ours, ours_lags),
    ]:
        print(
            f"| {name} | {rate:,.0f} | {rate / theirs:.1f}x | {percentile(lags, 0.5):.2f} | "
            f"{percentile(lags, 0.99):.2f} | {max(lags):.2f} |"
        )
    print()


async def _print_flood_only(
    rounds: Awaitable[tuple[float, list[float], float, list[float]]],
) -> None:
    print_flood(*await rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--flood", action="store_true", help="only the flood case")
    options = parser.parse_args()
    if options.flood:
        calls = 20_000 if options.quick else 100_000
        rounds = flood_rounds(1 if options.quick else 3, 2, calls, calls // 5)
        hybrid.run(_print_flood_only(rounds))
    else:
        hybrid.run(main(options.quick))
