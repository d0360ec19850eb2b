"""Shared counter, typed values and the named lock, hammered by real processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hybrid import LockTimeout
from hybrid.shared import Counter, NamedLock, SharedValue, _mapped, leftover_segments

from . import workers

START_METHODS = ["fork", "forkserver", "spawn"]


async def test_eight_processes_add_a_million_times_and_lose_nothing(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=8)
    with Counter() as counter:
        counter.add(5)  # the parent adds too
        pids = await asyncio.gather(
            *(engine.run(workers.add_many, counter, 125_000) for _ in range(8))
        )
        assert counter.value == 1_000_005
    assert os.getpid() not in pids
    assert len(set(pids)) > 1
    assert leftover_segments() == []


@pytest.mark.parametrize("start_method", START_METHODS)
def test_counter_given_through_the_initializer_works_with_every_start_method(
    start_method: str,
) -> None:
    context: Any = multiprocessing.get_context(start_method)
    with Counter() as counter:
        processes = [
            context.Process(target=workers.add_through_initializer, args=(counter, 20_000))
            for _ in range(4)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
            assert process.exitcode == 0
        assert counter.value == 80_000
        assert counter.reset() == 80_000
        assert counter.value == 0


async def test_counter_reaches_workers_through_the_engine_initializer(
    make_engine: Callable[..., Any],
) -> None:
    with Counter() as counter:
        engine = await make_engine(
            workers=2,
            start_method="spawn",
            initializer=workers.remember_counter,
            initargs=(counter,),
        )
        await asyncio.gather(*(engine.run(workers.add_to_remembered, 1000) for _ in range(6)))
        assert counter.value == 6000


def test_a_dead_process_keeps_its_count_and_frees_its_cell() -> None:
    context: Any = multiprocessing.get_context("fork")
    with Counter(cells=2) as counter:  # one lock-free cell besides the shared one
        for _ in range(3):
            process = context.Process(target=workers.add_many, args=(counter, 1000))
            process.start()
            process.join(60)
        assert counter.value == 3000
        counter.add(1)  # the parent takes over the dead child's cell, not the locked one
        assert _mapped.attach(counter.name).slot == 1
        assert counter.value == 3001


@pytest.mark.parametrize("start_method", START_METHODS)
def test_shared_value_updates_are_atomic(start_method: str) -> None:
    context: Any = multiprocessing.get_context(start_method)
    with SharedValue(0) as value:
        processes = [
            context.Process(target=workers.add_to_value, args=(value, 2000)) for _ in range(4)
        ]
        for process in processes:
            process.start()
        value.add(10)
        for process in processes:
            process.join(60)
            assert process.exitcode == 0
        assert value.get() == 8010
        assert value.compare_and_set(8010, -1)
        assert not value.compare_and_set(8010, 0)
        assert value.get() == -1


def test_shared_values_keep_their_type() -> None:
    with SharedValue(1.25) as ratio, SharedValue(False) as stop:
        assert ratio.update(lambda old: old * 2) == 2.5
        stop.set(True)
        assert stop.get() is True
    with pytest.raises(TypeError):
        SharedValue("text")  # type: ignore[type-var]
    assert leftover_segments() == []


@pytest.mark.parametrize("start_method", START_METHODS)
def test_named_lock_excludes_processes(start_method: str, tmp_path: Path) -> None:
    context: Any = multiprocessing.get_context(start_method)
    lock = NamedLock(f"test-exclude-{os.getpid()}-{start_method}", tmp_path)
    total = tmp_path / "total"
    total.write_text("0")
    processes = [
        context.Process(target=workers.increment_file_under_lock, args=(lock, str(total), 300))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert total.read_text() == "1200"


def test_a_holder_killed_with_sigkill_does_not_deadlock_the_others(tmp_path: Path) -> None:
    lock = NamedLock("test-killed-holder", tmp_path)
    ready = tmp_path / "ready"
    spawn: Any = multiprocessing.get_context("spawn")
    holder = spawn.Process(target=workers.hold_lock_forever, args=(lock, str(ready)))
    holder.start()
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lock.locked()
    started = time.monotonic()
    assert not lock.acquire(timeout_s=0.2)
    assert time.monotonic() - started >= 0.2
    with pytest.raises(LockTimeout):
        lock.hold(timeout_s=0.1).__enter__()
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(60)
    with lock.hold(timeout_s=10):
        assert holder.exitcode == -signal.SIGKILL


async def test_named_lock_from_tasks_and_the_event_loop(
    make_engine: Callable[..., Any], tmp_path: Path
) -> None:
    engine = await make_engine(workers=2)
    lock = NamedLock("test-async", tmp_path)
    assert await lock.acquire_async(timeout_s=1)
    try:
        assert await engine.run(workers.try_lock, lock, 0.2) is False
    finally:
        lock.release()
    assert await engine.run(workers.try_lock, lock, 5) is True
