"""What watching resources costs the event loop: the psutil monitor at its default rate vs
no monitor (and vs the naive blocking ``psutil.cpu_percent(interval=0.1)``), the cost of
one sample by number of workers, and the autoscaling policy's cost per decision.

    python -m benchmarks.bench_monitor            # full run (about a minute)
    python -m benchmarks.bench_monitor --quick    # smoke run

The "workers" are real idle child processes. Loop arms run in turns (none, monitor,
naive, none, monitor...) so drift on this shared machine hits them alike; figures are
medians over the rounds. CPU is the parent process's CPU time over each window, as a
share of one core; lag is how late a 10 ms sleep wakes up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

import hybrid
from adapters.psutil import PsutilMonitor
from hybrid.autoscale import AutoscaleConfig, Autoscaler, PoolLoad
from hybrid.resources import (
    DEFAULT_SAMPLE_INTERVAL_S,
    ProcessSample,
    ResourceSample,
    SystemSample,
    sample_periodically,
)

PROBE_INTERVAL_S = 0.01  # the lag probe's sleep
NAIVE_INTERVAL_S = 0.1  # psutil.cpu_percent(interval=...) as often seen in hand-rolled code
WORKERS = 4  # idle child processes the loop arms watch


@dataclass
class Window:
    cpu_core_share: float  # parent CPU seconds per wall second
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    samples: int
    sample_cost_s: list[float]


@contextlib.contextmanager
def idle_children(count: int) -> Iterator[list[int]]:
    processes = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        for _ in range(count)
    ]
    try:
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()


async def probe_lag(lags_s: list[float], stop: asyncio.Event) -> None:
    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(PROBE_INTERVAL_S)
        lags_s.append(max(0.0, time.perf_counter() - before - PROBE_INTERVAL_S))


async def naive_sampling(pids: list[int], interval_s: float) -> None:
    processes = [psutil.Process(pid) for pid in pids]
    while True:
        await asyncio.sleep(interval_s)
        psutil.cpu_percent(interval=NAIVE_INTERVAL_S)  # blocks the loop for 100 ms
        for process in processes:
            process.memory_info()


async def window(arm: str, pids: list[int], seconds: float, interval_s: float) -> Window:
    lags_s: list[float] = []
    costs_s: list[float] = []
    stop = asyncio.Event()
    policy = Autoscaler(AutoscaleConfig(cores=2))
    load = PoolLoad(workers=len(pids), busy=0, queued=0, pids=pids)
    loop = asyncio.get_running_loop()

    def consume(sample: ResourceSample) -> None:
        started_s = time.thread_time()
        policy.decide(sample, load, loop.time())
        costs_s.append(sample.cost_s + time.thread_time() - started_s)

    sampler: asyncio.Task[None] | None = None
    if arm == "monitor":
        monitor = PsutilMonitor()
        monitor.sample(pids)
        sampler = asyncio.ensure_future(
            sample_periodically(monitor, lambda: pids, consume, interval_s)
        )
    elif arm == "naive":
        sampler = asyncio.ensure_future(naive_sampling(pids, interval_s))
    probe = asyncio.ensure_future(probe_lag(lags_s, stop))
    cpu_before_s, wall_before_s = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu_s, wall_s = time.process_time() - cpu_before_s, time.perf_counter() - wall_before_s
    stop.set()
    await probe
    if sampler is not None:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    lags_ms = sorted(lag * 1000 for lag in lags_s)
    return Window(
        cpu_core_share=cpu_s / wall_s,
        lag_p50_ms=percentile(lags_ms, 0.50),
        lag_p99_ms=percentile(lags_ms, 0.99),
        lag_max_ms=lags_ms[-1],
        samples=len(costs_s),
        sample_cost_s=costs_s,
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(fraction * len(sorted_values)))]


def sample_cost_us(pids: list[int], samples: int) -> tuple[float, float]:
    """CPU time per sample (median, p99) in microseconds, sampling back to back."""
    monitor = PsutilMonitor()
    monitor.sample(pids)
    costs = sorted(monitor.sample(pids).cost_s * 1e6 for _ in range(samples))
    return statistics.median(costs), percentile(costs, 0.99)


def decision_cost_ns(workers: int, calls: int) -> float:
    """Median CPU time of one Autoscaler.decide call, in nanoseconds, over varied samples."""
    pids = list(range(1000, 1000 + workers))
    samples = [
        ResourceSample(
            at_s=step * 0.5,
            system=SystemSample(
                cpu_count=8,
                cpu_percent=(step * 37) % 100,
                steal_percent=float(step % 7),
                memory_total_bytes=8 << 30,
                memory_used_bytes=((step * 13) % 100) * (8 << 30) // 100,
                memory_available_bytes=1 << 30,
            ),
            engine=ProcessSample(1, 0.05, 50 << 20),
            workers=tuple(ProcessSample(pid, 0.5, (pid % 300) << 20) for pid in pids),
        )
        for step in range(500)
    ]
    loads = [
        PoolLoad(workers, (step * 3) % (workers + 1), (step * 11) % 200, pids)
        for step in range(500)
    ]
    policy = Autoscaler(AutoscaleConfig(cores=8, max_workers=max(8, workers)))
    timings = []
    for round_ in range(5):
        started = time.thread_time_ns()
        for call in range(calls):
            index = call % len(samples)
            policy.decide(samples[index], loads[index], round_ * 1e6 + call * 0.5)
        timings.append((time.thread_time_ns() - started) / calls)
    return statistics.median(timings)


async def loop_arms(rounds: int, seconds: float) -> dict[str, list[Window]]:
    results: dict[str, list[Window]] = {"none": [], "monitor": [], "naive": []}
    with idle_children(WORKERS) as pids:
        for _ in range(rounds):
            for arm in results:
                results[arm].append(await window(arm, pids, seconds, DEFAULT_SAMPLE_INTERVAL_S))
    return results


def med(values: list[float]) -> float:
    return statistics.median(values)


def print_loop_table(results: dict[str, list[Window]], seconds: float) -> None:
    rounds = len(results["none"])
    print(
        f"## The loop with {WORKERS} workers watched every {DEFAULT_SAMPLE_INTERVAL_S:g} s "
        f"(medians of {rounds} windows of {seconds:g} s)"
    )
    print()
    print(
        "| arm | parent CPU (% of a core) | added vs none | lag p50 ms | lag p99 ms | lag max ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    base = med([w.cpu_core_share for w in results["none"]])
    names = {
        "none": "no monitor",
        "monitor": "PsutilMonitor + Autoscaler (ours)",
        "naive": f"naive psutil.cpu_percent(interval={NAIVE_INTERVAL_S:g})",
    }
    for arm, windows in results.items():
        share = med([w.cpu_core_share for w in windows])
        lags = [
            med([getattr(w, name) for w in windows])
            for name in ("lag_p50_ms", "lag_p99_ms", "lag_max_ms")
        ]
        print(
            f"| {names[arm]} | {share * 100:.3f} | {(share - base) * 100:+.3f} | "
            + " | ".join(f"{lag:.2f}" for lag in lags)
            + " |"
        )
    costs = sorted(cost for w in results["monitor"] for cost in w.sample_cost_s)
    per_s = 1 / DEFAULT_SAMPLE_INTERVAL_S
    direct = statistics.median(costs) * per_s
    print()
    median_us, p99_us = statistics.median(costs) * 1e6, percentile(costs, 0.99) * 1e6
    print(
        f"- our sample + decision, timed in the loop thread: median {median_us:.0f} us, "
        f"p99 {p99_us:.0f} us over {len(costs)} samples; at {per_s:g} samples/s that is "
        f"{direct * 100:.3f}% of one core (target < 1%)"
    )
    print()


def print_cost_tables(samples: int, calls: int) -> None:
    print(f"## One sample, back to back (CPU time, {samples} samples)")
    print()
    print("| workers watched | median us | p99 us | % of one core at the default rate |")
    print("|---:|---:|---:|---:|")
    for count in (0, 4, 16):
        with idle_children(count) as pids:
            median_us, p99_us = sample_cost_us(pids, samples)
        share = median_us / 1e6 / DEFAULT_SAMPLE_INTERVAL_S * 100
        print(f"| {count} | {median_us:.0f} | {p99_us:.0f} | {share:.3f} |")
    print()
    print(f"## Autoscaler.decide (median of 5 x {calls} calls)")
    print()
    print("| workers in the pool | ns per decision | vs one sample with 4 workers |")
    print("|---:|---:|---:|")
    with idle_children(4) as pids:
        reference_us, _ = sample_cost_us(pids, samples)
    for count in (4, 16, 64):
        cost_ns = decision_cost_ns(count, calls)
        print(f"| {count} | {cost_ns:,.0f} | {cost_ns / 1000 / reference_us:.2f}x |")
    print()


async def main(quick: bool) -> None:
    rounds, seconds = (2, 1.5) if quick else (5, 6.0)
    samples, calls = (200, 2000) if quick else (2000, 20000)
    print(
        f"# bench_monitor: Python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs, "
        f"loop {type(asyncio.get_running_loop()).__module__}"
    )
    print()
    print_loop_table(await loop_arms(rounds, seconds), seconds)
    print_cost_tables(samples, calls)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    options = parser.parse_args()
    hybrid.run(main(options.quick))
