"""Worker liveness on real processes: kill -9, SIGSTOP and CPU hogs, hybrid vs the stdlib.

    python -m benchmarks.bench_liveness            # about a minute
    python -m benchmarks.bench_liveness --quick

Times are from the signal to the engine's verdict: a killed worker seen (its sentinel),
a stopped one suspected, then killed and replaced. The stdlib ProcessPoolExecutor is run
beside it on the same faults. The simulated traces are in benchmarks.bench_detector.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import hybrid
from benchmarks import work


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def row(name: str, samples_s: list[float]) -> str:
    ms = [s * 1000 for s in samples_s]
    return (
        f"| {name} | {len(ms)} | {statistics.mean(ms):.1f} | {percentile(ms, 0.5):.1f} | "
        f"{percentile(ms, 0.99):.1f} | {max(ms):.1f} |"
    )


async def killed_worker_seen(repeats: int) -> list[float]:
    samples = []
    async with hybrid.Engine(2) as engine:
        pool = engine._pools["default"]
        for _ in range(repeats):
            await wait_full(engine)
            slot = pool.slots[0]
            pid = slot.pid or 0
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while slot.alive and slot.pid == pid:  # marked dead from its sentinel
                await asyncio.sleep(0.0005)
            samples.append(time.monotonic() - killed_at)
    return samples


async def stopped_worker(repeats: int, busy: bool) -> tuple[list[float], list[float]]:
    """Seconds from SIGSTOP to SUSPECT, and to the worker being killed."""
    suspected, killed = [], []
    async with hybrid.Engine(2) as engine:
        pool = engine._pools["default"]
        for _ in range(repeats):
            await wait_full(engine)
            await asyncio.sleep(1.0)  # let the detector learn the fresh worker's beat
            slot = pool.slots[0]
            pid = slot.pid or 0
            job = None
            if busy:
                job = asyncio.ensure_future(engine.run(work.sleep, 30, key="pin-to-slot-0"))
                await asyncio.sleep(0.2)
            stopped_at = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            seen_suspect = None
            while slot.pid == pid and slot.alive:
                liveness = slot.liveness
                if seen_suspect is None and liveness is not None and liveness.state != "alive":
                    seen_suspect = time.monotonic()
                await asyncio.sleep(0.001)
            killed.append(time.monotonic() - stopped_at)
            suspected.append((seen_suspect or time.monotonic()) - stopped_at)
            if job is not None:
                with contextlib.suppress(hybrid.WorkerCrashed):
                    await job
    return suspected, killed


async def under_cpu_hogs(seconds: float) -> hybrid.EngineStats:
    """Run tasks while two outside processes hog both CPUs: nobody may be convicted."""
    hogs = [
        multiprocessing.get_context("spawn").Process(target=work.spin, args=(seconds,))
        for _ in range(2)
    ]
    for hog in hogs:
        hog.start()
    try:
        async with hybrid.Engine(2) as engine:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await asyncio.gather(*(engine.run(work.spin, 0.05) for _ in range(4)))
                await asyncio.sleep(0.2)  # idle gaps too: idle workers must beat through them
            return engine.stats()
    finally:
        for hog in hogs:
            hog.join()


def stdlib_stopped_worker_detected(wait_s: float) -> bool:
    """Does a stdlib pool notice a stopped worker within wait_s? (It has no way to.)"""
    with ProcessPoolExecutor(1) as executor:
        pid = executor.submit(os.getpid).result()
        future = executor.submit(work.sleep, 0.5)
        os.kill(pid, signal.SIGSTOP)
        try:
            future.result(timeout=wait_s)
        except TimeoutError:
            detected = False
        except BrokenProcessPool:
            detected = True
        else:
            detected = True
        os.kill(pid, signal.SIGKILL)
    return detected


def stdlib_killed_worker_spills(repeats: int) -> int:
    """How many innocent calls fail when one stdlib worker is killed (per kill)."""
    innocent_failures = 0
    for _ in range(repeats):
        with ProcessPoolExecutor(2) as executor:
            futures = [executor.submit(work.sleep, 0.3) for _ in range(4)]
            time.sleep(0.1)
            victim = next(iter(executor._processes))  # type: ignore[attr-defined]
            os.kill(victim, signal.SIGKILL)
            innocent_failures += sum(1 for f in futures if f.exception() is not None) - 1
    return innocent_failures


async def wait_full(engine: hybrid.Engine) -> None:
    while engine.stats().workers < engine.workers:
        await asyncio.sleep(0.01)


async def main(quick: bool) -> None:
    repeats = 10 if quick else 50
    stop_repeats = 3 if quick else 15
    print("# Worker liveness on real processes (2 workers, forkserver)")
    print()
    print("| fault (hybrid) | n | mean ms | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("kill -9, idle worker: death seen", await killed_worker_seen(repeats)))
    suspected, killed = await stopped_worker(stop_repeats, busy=False)
    print(row("SIGSTOP, idle worker: suspected", suspected))
    print(row("SIGSTOP, idle worker: killed and replaced", killed))
    suspected, killed = await stopped_worker(stop_repeats, busy=True)
    print(row("SIGSTOP, busy worker: suspected", suspected))
    print(row("SIGSTOP, busy worker: killed, its call failed", killed))
    print()
    hog_s = 5.0 if quick else 30.0
    stats = await under_cpu_hogs(hog_s)
    print(
        f"- CPU hogs on both cores for {hog_s:.0f} s: {stats.completed} calls done, "
        f"{stats.hung_workers_killed} workers falsely killed, {stats.crashed} calls failed"
    )
    detected = await asyncio.to_thread(stdlib_stopped_worker_detected, 5.0)
    spill = await asyncio.to_thread(stdlib_killed_worker_spills, 5)
    print(
        f"- stdlib ProcessPoolExecutor: SIGSTOP of a busy worker detected within 5 s: "
        f"{'yes' if detected else 'no (the call waits forever)'}; kill -9 of one worker "
        f"failed {spill / 5:.1f} innocent calls per kill (hybrid: 0, see tests)"
    )


if __name__ == "__main__":
    logging.getLogger("hybrid").setLevel(logging.ERROR)  # the kills below are on purpose
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    hybrid.run(main(parser.parse_args().quick))
