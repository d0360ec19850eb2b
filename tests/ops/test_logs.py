"""Workers' log records reach the parent's loggers, tagged with worker pid and task id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import hybrid
from hybrid.logs import LogForwarding, LogQueue, call_with_task_id, install_worker_logging
from tests.helpers import worker_pids
from tests.ops import worker_tasks


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def forwarding() -> Iterator[LogForwarding]:
    with LogForwarding(level=logging.DEBUG) as forwarding:
        yield forwarding


async def wait_for_records(handler: Collect, count: int, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while len(handler.records) < count:
            await asyncio.sleep(0.01)


async def test_a_crashing_workers_last_record_reaches_the_parent(
    make_engine: Callable[..., Any], forwarding: LogForwarding, collected: Collect
) -> None:
    engine = await make_engine(
        workers=1, initializer=install_worker_logging, initargs=forwarding.initargs
    )
    (pid,) = worker_pids(engine)
    with pytest.raises(hybrid.WorkerCrashed):
        await engine.run(worker_tasks.log_then_crash, "about to die")
    await wait_for_records(collected, 1)
    (record,) = collected.records
    assert record.getMessage() == "about to die"
    assert record.levelno == logging.WARNING
    assert record.worker_pid == pid  # type: ignore[attr-defined]


async def test_records_carry_the_task_id_the_caller_gave(
    make_engine: Callable[..., Any], forwarding: LogForwarding, collected: Collect
) -> None:
    engine = await make_engine(
        workers=2, initializer=install_worker_logging, initargs=forwarding.initargs
    )
    tagged_pid = await engine.run(call_with_task_id, "order-17", worker_tasks.log_lines, 3)
    untagged = await engine.submit(worker_tasks.log_lines, 2)
    await untagged
    await wait_for_records(collected, 5)
    by_task: dict[object, list[str]] = {}
    for record in collected.records:
        by_task.setdefault(record.task_id, []).append(record.getMessage())  # type: ignore[attr-defined]
    assert by_task == {
        "order-17": ["line 1 of 3", "line 2 of 3", "line 3 of 3"],
        untagged.id: ["line 1 of 2", "line 2 of 2"],  # the engine's own id otherwise
    }
    tagged = [record for record in collected.records if record.task_id == "order-17"]  # type: ignore[attr-defined]
    assert {record.worker_pid for record in tagged} == {tagged_pid}  # type: ignore[attr-defined]
    assert tagged_pid in worker_pids(engine)


async def test_the_parents_level_decides_what_workers_send(
    make_engine: Callable[..., Any], collected: Collect
) -> None:
    with LogForwarding(level=logging.WARNING) as forwarding:
        engine = await make_engine(
            workers=1, initializer=install_worker_logging, initargs=forwarding.initargs
        )
        await engine.run(worker_tasks.log_lines, 3)
        with pytest.raises(hybrid.WorkerCrashed):
            await engine.run(worker_tasks.log_then_crash, "warning passes")
        await wait_for_records(collected, 1)
    assert [record.getMessage() for record in collected.records] == ["warning passes"]


async def test_an_engine_asked_to_forward_logs_tags_each_record_with_its_task_id(
    make_engine: Callable[..., Any], collected: Collect
) -> None:
    engine = await make_engine(workers=2, forward_logs=True)
    tasks = [await engine.submit(worker_tasks.log_lines, 3) for _ in range(4)]
    pids = await asyncio.gather(*tasks)
    await wait_for_records(collected, 12)
    ids = [task.id for task in tasks]
    assert len(set(ids)) == 4
    for task, pid in zip(tasks, pids, strict=True):
        # A task's log lines are found by its id, and came from the worker that ran it.
        lines = [record for record in collected.records if record.task_id == task.id]  # type: ignore[attr-defined]
        assert [record.getMessage() for record in lines] == [
            "line 1 of 3",
            "line 2 of 3",
            "line 3 of 3",
        ]
        assert {record.worker_pid for record in lines} == {pid}  # type: ignore[attr-defined]
    assert set(pids) <= set(worker_pids(engine))
    assert hybrid.current_task_id() is None  # not inside a worker's call


async def test_a_crashing_tasks_records_and_error_share_its_task_id(
    make_engine: Callable[..., Any], collected: Collect
) -> None:
    engine = await make_engine(workers=1, forward_logs=True)
    (pid,) = worker_pids(engine)
    with pytest.raises(hybrid.WorkerCrashed) as crashed:
        await engine.run(worker_tasks.log_then_crash, "about to die")
    await wait_for_records(collected, 1)
    (record,) = collected.records
    assert record.getMessage() == "about to die"
    assert record.worker_pid == crashed.value.pid == pid  # type: ignore[attr-defined]
    assert record.task_id == crashed.value.task_id is not None  # type: ignore[attr-defined]


async def test_every_call_of_a_map_gets_its_own_task_id(
    make_engine: Callable[..., Any], collected: Collect
) -> None:
    engine = await make_engine(workers=2, forward_logs=True)
    ids = [task_id async for task_id in engine.map(worker_tasks.log_own_task_id, range(50))]
    assert None not in ids
    assert len(set(ids)) == 50
    await wait_for_records(collected, 50)
    logged = {record.getMessage(): record.task_id for record in collected.records}  # type: ignore[attr-defined]
    assert logged == {f"call {x}": task_id for x, task_id in enumerate(ids)}


def test_an_unreadable_record_becomes_a_warning_not_a_dead_listener() -> None:
    queue = LogQueue()
    try:
        queue._writer.send(b"not a pickle")
        queue.put_nowait(logging.makeLogRecord({"name": "tests.ops.worker", "msg": "next"}))
        first, second = queue.get(), queue.get()
    finally:
        queue.close()
    assert first.name == "hybrid.logs"
    assert "could not be read" in first.getMessage()
    assert second.getMessage() == "next"


def test_an_oversized_record_is_cut_to_fit() -> None:
    queue = LogQueue()
    try:
        queue.put_nowait(logging.makeLogRecord({"name": "x", "msg": "y" * 500_000}))
        record = queue.get()
    finally:
        queue.close()
    assert record.getMessage().endswith("[record cut to fit 60000 bytes]")
    assert queue.dropped == 0
