"""Sharing between processes: hybrid.shared against the standard library, side by side in one run.

    python -m benchmarks.bench_sharing            # full run (about a minute on 2 cores)
    python -m benchmarks.bench_sharing --quick    # smoke run

1. A 100 MB ``bytes`` argument and a 100 MB ``bytes`` result: ``engine.run(echo, data)``
   (shared memory, transparently) vs pickling through a ProcessPoolExecutor's pipe. Each
   variant runs in a fresh interpreter so its peak RSS (ru_maxrss) is its own; the 100 MB
   input itself is part of every figure, and so are the spare segments hybrid keeps
   mapped for the next large call (listed apart).
2. A shared counter, 8 processes adding 1 at once: ``hybrid.shared.Counter.add`` vs
   ``multiprocessing.Value`` under its lock.
3. A JSON Lines sink, 4 writer processes, batches of 100 records: fsync never vs per batch.
4. ``engine.run(fn, x, cache=...)`` for a 50 ms call: computing it vs a hit in
   ``MemoryCache`` and in ``adapters.redis.RedisCache`` (Redis at 127.0.0.1:6379).

Figures are medians over repeats; the machine is shared, so compare ratios within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import hybrid
from hybrid.shared import Counter, MemoryCache, Sink, leftover_segments, read_records
from hybrid.shared._segment import path_of

PAYLOAD_BYTES = 100 * 1000 * 1000
MiB = 1 << 20


def echo(data: Any) -> Any:
    """The worker's task: return its argument (so the result is as large as the input)."""
    return data


# 1. Payloads (each variant in its own interpreter)


async def payload_pipe(data: bytes, repeats: int) -> list[float]:
    loop = asyncio.get_running_loop()
    times = []
    with ProcessPoolExecutor(1) as executor:
        await loop.run_in_executor(executor, echo, b"warm")
        for _ in range(1 + repeats):
            started = time.perf_counter()
            result = await loop.run_in_executor(executor, echo, data)
            times.append(time.perf_counter() - started)
            assert len(result) == len(data)
            del result
    return times


async def payload_shared(data: Any, repeats: int) -> tuple[list[float], int]:
    times = []
    async with hybrid.Engine(1) as engine:
        await engine.run(echo, b"warm")
        for _ in range(1 + repeats):  # the first large call finds no spare segment ready
            started = time.perf_counter()
            result = await engine.run(echo, data)
            times.append(time.perf_counter() - started)
            assert len(result) == len(data)
            assert type(result) is type(data)
            del result
        spare_bytes = sum(path_of(name).stat().st_size for name in leftover_segments(spares=True))
    return times, spare_bytes


def run_payload_variant(variant: str, repeats: int) -> None:
    data = os.urandom(PAYLOAD_BYTES)
    base_rss_bytes = peak_rss_bytes()
    spare_bytes = 0
    if variant == "pipe":
        times = asyncio.run(payload_pipe(data, repeats))
    elif variant == "shared":
        times, spare_bytes = asyncio.run(payload_shared(data, repeats))
    else:
        times, spare_bytes = asyncio.run(payload_shared(memoryview(data), repeats))
    figures = {"times": times, "peak": peak_rss_bytes(), "base": base_rss_bytes}
    print(json.dumps({**figures, "spares": spare_bytes}))


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure_payloads(repeats: int, rounds: int) -> list[list[str]]:
    variants = {
        "pipe": "pickle through ProcessPoolExecutor pipe",
        "shared": "hybrid engine.run, bytes in/out",
        "view": "hybrid engine.run, memoryview in/out",
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    firsts: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, list[int]] = {name: [] for name in variants}
    spares: dict[str, int] = dict.fromkeys(variants, 0)
    base = 0
    for _ in range(rounds):  # interleaved, so drift on a shared machine hits all alike
        for name in variants:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_sharing",
                    "--payload",
                    name,
                    "--repeats",
                    str(repeats),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            firsts[name].append(figures["times"][0])
            times[name].extend(figures["times"][1:])
            peaks[name].append(figures["peak"])
            spares[name] = max(spares[name], figures["spares"])
            base = figures["base"]
    pipe_s = statistics.median(times["pipe"])
    rows = []
    for name, label in variants.items():
        median_s = statistics.median(times[name])
        rows.append(
            [
                label,
                f"{median_s * 1000:.0f} ms",
                f"{pipe_s / median_s:.1f}x",
                f"{statistics.median(firsts[name]) * 1000:.0f} ms",
                f"{max(peaks[name]) / MiB:.0f} MiB",
                f"{(max(peaks[name]) - base) / MiB:+.0f} MiB",
                f"{spares[name] / MiB:.0f} MiB",
            ]
        )
    return rows


# 2. Counters


def count_hybrid(counter: Counter, times: int, gate: Any, ends: Any) -> None:
    gate.wait()
    add = counter.add
    for _ in range(times):
        add(1)
    ends.put(time.perf_counter())


def count_mp_value(value: Synchronized[int], times: int, gate: Any, ends: Any) -> None:
    gate.wait()
    lock = value.get_lock()
    for _ in range(times):
        with lock:
            value.value += 1
    ends.put(time.perf_counter())


def counter_rate(kind: str, processes: int, times: int) -> tuple[float, int]:
    context = multiprocessing.get_context("fork")
    gate, ends = context.Event(), context.Queue()
    shared: Any = Counter() if kind == "hybrid" else context.Value("q", 0)
    target = count_hybrid if kind == "hybrid" else count_mp_value
    workers = [
        context.Process(target=target, args=(shared, times, gate, ends)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    time.sleep(0.3)
    started = time.perf_counter()
    gate.set()
    finished: float = max(ends.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join()
    total = shared.value
    if kind == "hybrid":
        shared.close()
    return processes * times / (finished - started), total


def measure_counters(processes: int, times: int, rounds: int) -> list[list[str]]:
    rates: dict[str, list[float]] = {"hybrid": [], "mp": []}
    for _ in range(rounds):
        for kind in rates:
            rate, total = counter_rate(kind, processes, times)
            assert total == processes * times, (kind, total)
            rates[kind].append(rate)
    mp_rate = statistics.median(rates["mp"])
    labels = {
        "hybrid": "hybrid.shared.Counter.add",
        "mp": "multiprocessing.Value + get_lock()",
    }
    return [
        [
            labels[kind],
            f"{statistics.median(r) / 1e6:.2f} M adds/s",
            f"{statistics.median(r) / mp_rate:.1f}x",
            "no lost update",
        ]
        for kind, r in rates.items()
    ]


# 3. Sinks


def write_batches(sink: Sink, writer: int, batches: int, gate: Any, ends: Any) -> None:
    gate.wait()
    for batch in range(batches):
        sink.write_many(
            {"writer": writer, "batch": batch, "n": n, "text": "x" * 60} for n in range(100)
        )
    ends.put(time.perf_counter())


def sink_rate(fsync: str, processes: int, batches: int, directory: Path) -> float:
    path = directory / f"sink-{fsync}-{time.monotonic_ns()}.jsonl"
    context = multiprocessing.get_context("fork")
    gate, ends = context.Event(), context.Queue()
    sink = Sink(path, fsync=fsync)  # type: ignore[arg-type]
    writers = [
        context.Process(target=write_batches, args=(sink, w, batches, gate, ends))
        for w in range(processes)
    ]
    for writer in writers:
        writer.start()
    time.sleep(0.3)
    started = time.perf_counter()
    gate.set()
    finished: float = max(ends.get(timeout=600) for _ in writers)
    for writer in writers:
        writer.join()
    records = sum(1 for _ in read_records(path))
    assert records == processes * batches * 100
    path.unlink()
    return records / (finished - started)


def measure_sinks(processes: int, batches: int, rounds: int) -> list[list[str]]:
    rates: dict[str, list[float]] = {"never": [], "batch": []}
    # On the repository's disk, not /tmp: fsync on a tmpfs would cost nothing.
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as directory:
        for _ in range(rounds):
            for fsync in rates:
                rates[fsync].append(sink_rate(fsync, processes, batches, Path(directory)))
    never = statistics.median(rates["never"])
    return [
        [
            f"JSON Lines sink, fsync={fsync}",
            f"{statistics.median(r) / 1e3:.0f} k records/s",
            f"{statistics.median(r) / never:.2f}x",
            f"{processes} writers, batches of 100",
        ]
        for fsync, r in rates.items()
    ]


# 4. Result cache


def fifty_ms(x: int) -> int:
    """The cached call: 50 ms of CPU in a worker."""
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    return x * x


async def cache_latencies(calls: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"compute": [], "memory": [], "redis": []}
    caches: dict[str, Any] = {"compute": None, "memory": MemoryCache()}
    try:
        from adapters.redis import RedisCache

        caches["redis"] = RedisCache(prefix=f"bench-cache-{os.getpid()}", secret="bench")
    except ImportError:
        del times["redis"]
    async with hybrid.Engine(1) as engine:
        await engine.run(fifty_ms, 0)
        for name in times:
            await engine.run(fifty_ms, 1, cache=caches[name])  # the entry is made once
        for _ in range(calls):
            for name, cache in caches.items():  # interleaved
                started = time.perf_counter()
                assert await engine.run(fifty_ms, 1, cache=cache) == 1
                times[name].append(time.perf_counter() - started)
    if "redis" in caches:
        await caches["redis"].clear()
        await caches["redis"].close()
    return times


def measure_cache(calls: int) -> list[list[str]]:
    times = asyncio.run(cache_latencies(calls))
    compute_s = statistics.median(times["compute"])
    labels = {
        "compute": "engine.run, no cache (computes)",
        "memory": "cache=MemoryCache(), hit",
        "redis": "cache=RedisCache(...), hit",
    }
    return [
        [
            labels[name],
            f"{statistics.median(t) * 1000:.2f} ms",
            f"{compute_s / statistics.median(t):.0f}x",
        ]
        for name, t in times.items()
    ]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    for row in [header, ["-" * width for width in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--payload", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.payload:
        run_payload_variant(args.payload, args.repeats)
        return
    rounds = 1 if args.quick else 3
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, hybrid {hybrid.__version__}")
    print_table(
        "1. 100 MB bytes argument + 100 MB result, one call: median after the first call "
        "(parent peak RSS includes the input)",
        ["path", "median", "vs pipe", "first call", "parent peak RSS", "over input", "spares"],
        measure_payloads(repeats=2 if args.quick else 5, rounds=rounds),
    )
    adds = 20_000 if args.quick else 200_000
    print_table(
        f"2. Shared counter, 8 processes x {adds:,} adds",
        ["counter", "median", "vs mp.Value", "check"],
        measure_counters(8, adds, rounds),
    )
    print_table(
        "3. Sink, 4 writer processes",
        ["sink", "median", "vs no fsync", "setup"],
        measure_sinks(4, 50 if args.quick else 200, rounds),
    )
    print_table(
        "4. Result cache, a 50 ms call",
        ["call", "median", "vs computing"],
        measure_cache(20 if args.quick else 100),
    )


if __name__ == "__main__":
    main()
