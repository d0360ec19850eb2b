"""Resource awareness, side by side in one run: autoscaling vs a fixed pool, memory recycling
of a leaky task, and affinity by key.

    python -m benchmarks.bench_resources            # a few minutes
    python -m benchmarks.bench_resources --quick

The monitor's own cost on the loop is measured by benchmarks.bench_monitor.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import time
from typing import Any

import hybrid
from adapters.psutil import PsutilMonitor
from benchmarks import work
from hybrid.autoscale import AutoscaleConfig


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def lag_probe(lags: list[float]) -> None:
    while True:
        start = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - start - 0.005)


async def bursty(engine_kwargs: dict[str, Any], tasks: int, idle_s: float) -> dict[str, float]:
    """Idle, then a burst of 5 ms tasks with an outside CPU hog switched on half way, then idle."""
    lags: list[float] = []
    latencies: list[float] = []
    hog = multiprocessing.get_context("spawn").Process(target=work.spin, args=(30.0,))
    async with hybrid.Engine(**engine_kwargs) as engine:
        prober = asyncio.ensure_future(lag_probe(lags))
        await asyncio.sleep(idle_s)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()

        async def one(n: int) -> None:
            submitted = loop.time()
            await engine.run(work.spin, 0.005)
            latencies.append(loop.time() - submitted)
            if n == tasks // 2:
                hog.start()

        await asyncio.gather(*(one(n) for n in range(tasks)))
        elapsed = time.perf_counter() - started
        hog.terminate()
        await asyncio.sleep(idle_s)
        prober.cancel()
        stats = engine.stats()
    hog.join()
    return {
        "seconds": elapsed,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "lag_p99_ms": percentile(lags, 0.99) * 1000,
        "workers_end": stats.workers,
        "decisions": sum(stats.autoscale.decisions.values() if stats.autoscale else [0]),
    }


async def leaky_task(calls: int, max_rss_bytes: int | None) -> dict[str, float]:
    async with hybrid.Engine(1, max_rss_bytes=max_rss_bytes) as engine:
        started = time.perf_counter()
        peak = 0
        for _ in range(calls):
            peak = max(peak, await engine.run(work.leaky, 5))
        elapsed = time.perf_counter() - started
        return {
            "calls_per_s": calls / elapsed,
            "peak_rss_mb": peak / 2**20,
            "recycled": engine.stats().recycled_for_memory,
        }


async def affinity(keys: int, rounds: int, keyed: bool) -> dict[str, float]:
    async with hybrid.Engine(2) as engine:
        started = time.perf_counter()
        hits = 0
        for _ in range(rounds):
            calls = [
                engine.run(work.warm_lookup, key, key=key if keyed else None) for key in range(keys)
            ]
            hits += sum(await asyncio.gather(*calls))
        elapsed = time.perf_counter() - started
        return {"hit_rate": hits / (keys * rounds), "calls_per_s": keys * rounds / elapsed}


async def main(quick: bool) -> None:
    cpus = os.cpu_count() or 1
    burst = 2000 if quick else 20_000
    idle_s = 1.0 if quick else 3.0
    print(f"# Resource awareness ({cpus} CPUs, usable {hybrid.usable_cpus()})")
    print()
    fixed = await bursty({"workers": cpus}, burst, idle_s)
    auto = await bursty(
        {
            "workers": cpus,
            "monitor": PsutilMonitor(),
            "autoscale": AutoscaleConfig(min_workers=1, max_workers=cpus, outside_after_s=1.0),
        },
        burst,
        idle_s,
    )
    print(f"## Bursty workload: {burst:,} x 5 ms tasks, an outside CPU hog from half way")
    print()
    print(
        "| pool | completion s | task latency p99 ms | loop lag p99 ms "
        "| workers at end | decisions |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, result in (("fixed os.cpu_count()", fixed), ("autoscaling (psutil)", auto)):
        print(
            f"| {name} | {result['seconds']:.2f} | {result['latency_p99_ms']:.1f} | "
            f"{result['lag_p99_ms']:.2f} | {result['workers_end']:.0f} | "
            f"{result['decisions']:.0f} |"
        )
    print()
    calls = 60 if quick else 200
    plain = await leaky_task(calls, None)
    limited = await leaky_task(calls, 200 * 2**20)
    print(f"## Leaky task (+5 MB per call, {calls} calls, one worker)")
    print()
    print("| pool | calls/s | peak worker RSS MB | workers recycled |")
    print("|---|---:|---:|---:|")
    for name, result in (("no limit", plain), ("max_rss_bytes=200 MB", limited)):
        print(
            f"| {name} | {result['calls_per_s']:.1f} | {result['peak_rss_mb']:.0f} | "
            f"{result['recycled']:.0f} |"
        )
    print(
        f"- recycling cost: {1 - limited['calls_per_s'] / plain['calls_per_s']:.1%} of throughput"
    )
    print()
    keys, rounds = (50, 4) if quick else (200, 10)
    without = await affinity(keys, rounds, keyed=False)
    keyed = await affinity(keys, rounds, keyed=True)
    print(f"## Affinity: {keys} keys x {rounds} rounds, 10x faster with a warm per-worker cache")
    print()
    print("| dispatch | cache hit rate | calls/s |")
    print("|---|---:|---:|")
    for name, result in (("least loaded (no key)", without), ("key=", keyed)):
        print(f"| {name} | {result['hit_rate']:.1%} | {result['calls_per_s']:.0f} |")
    print(f"- speed-up with key=: {keyed['calls_per_s'] / without['calls_per_s']:.2f}x")


if __name__ == "__main__":
    logging.getLogger("hybrid").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    hybrid.run(main(parser.parse_args().quick))
