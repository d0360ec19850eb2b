"""Worker isolation applied in real child processes, the way a worker initializer applies
it: pinning shows in the child's affinity, an address-space limit fails a big allocation
with MemoryError in the child only (which survives), and the nice level is raised."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import resource
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from hypothesis import given, strategies as st

import hybrid
from hybrid import IsolationError, MemoryLimitExceeded
from hybrid.isolation import (
    is_memory_limit_error,
    isolate_worker,
    limit_address_space,
    pin_to_cpus,
    spread_cpu,
)
from tests.resources import children

MIB = 1 << 20


@pytest.fixture
def worker() -> Iterator[Any]:
    """Start one-process executors whose initializer isolates the worker; shut them down."""
    executors: list[ProcessPoolExecutor] = []

    def start(*initargs: Any) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=isolate_worker,
            initargs=initargs,
        )
        executors.append(executor)
        return executor

    yield start
    for executor in executors:
        executor.shutdown(wait=True, cancel_futures=True)


def test_spreading_is_stable_and_even_at_every_pool_size() -> None:
    cpus = [0, 1, 2, 3, 4, 5, 6, 7]
    order = [spread_cpu(index, cpus) for index in range(8)]
    assert order == [0, 4, 2, 6, 1, 5, 3, 7]
    assert sorted(order) == cpus  # each CPU once before any twice
    assert [spread_cpu(index, cpus) for index in range(8, 11)] == [0, 4, 2]
    assert [spread_cpu(index, [3, 9, 12]) for index in range(3)] == [3, 12, 9]
    assert spread_cpu(5, [7]) == 7


@given(st.sets(st.integers(0, 1023), min_size=1, max_size=64), st.integers(0, 200))
def test_any_first_slots_use_distinct_cpus_until_every_cpu_has_one(
    cpu_ids: set[int], slots: int
) -> None:
    chosen = [spread_cpu(index, sorted(cpu_ids)) for index in range(slots)]
    assert set(chosen) <= cpu_ids
    for start in range(0, slots, len(cpu_ids)):
        lap = chosen[start : start + len(cpu_ids)]
        assert len(set(lap)) == len(lap)


def test_spreading_defaults_to_the_cpus_this_process_may_use() -> None:
    usable = sorted(os.sched_getaffinity(0))
    assert {spread_cpu(index) for index in range(len(usable))} == set(usable)
    with pytest.raises(ValueError):
        spread_cpu(-1)


def test_pinning_shows_in_the_childs_affinity_only(worker: Any) -> None:
    usable = sorted(os.sched_getaffinity(0))
    cpu = spread_cpu(1, usable)
    pinned = worker(cpu)
    assert pinned.submit(children.affinity).result(timeout=30) == [cpu]
    assert sorted(os.sched_getaffinity(0)) == usable


def test_an_address_space_limit_fails_a_big_allocation_in_the_child_only(worker: Any) -> None:
    limited = worker(None, 768 * MIB)
    assert limited.submit(children.address_space_limit).result(timeout=30) == (
        768 * MIB,
        768 * MIB,
    )
    assert limited.submit(children.allocate, 1024 * MIB).result(timeout=30) == "MemoryError"
    # The worker survives its refused allocation and serves the next task.
    assert limited.submit(children.allocate, 16 * MIB).result(timeout=30) == "allocated 16777216"
    # This process is untouched: it has no limit and the same allocation works here.
    assert resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY
    assert children.allocate(1024 * MIB) == "allocated 1073741824"


def test_a_nice_level_is_added_in_the_child(worker: Any) -> None:
    mine = os.nice(0)
    assert worker(None, None, 5).submit(children.niceness).result(timeout=30) == mine + 5
    assert os.nice(0) == mine


def test_all_three_together(worker: Any) -> None:
    cpu = spread_cpu(0)
    both = worker([cpu], 1024 * MIB, 3)
    assert both.submit(children.affinity).result(timeout=30) == [cpu]
    assert both.submit(children.address_space_limit).result(timeout=30)[0] == 1024 * MIB
    assert both.submit(children.niceness).result(timeout=30) == os.nice(0) + 3


def test_an_existing_lower_limit_is_kept(worker: Any) -> None:
    limited = worker(None, 512 * MIB)
    assert limited.submit(limit_address_space, 2048 * MIB).result(timeout=30) is None
    assert limited.submit(children.address_space_limit).result(timeout=30) == (
        512 * MIB,
        512 * MIB,
    )


def test_pinning_to_a_cpu_that_is_not_there_is_a_clear_error(worker: Any) -> None:
    executor = worker()
    with pytest.raises(IsolationError, match="cannot pin to CPUs \\[4095\\]"):
        executor.submit(pin_to_cpus, 4095).result(timeout=30)


def test_bad_arguments_are_refused_before_touching_the_process() -> None:
    with pytest.raises(ValueError):
        limit_address_space(0)
    with pytest.raises(ValueError):
        isolate_worker(nice=-1)


def test_the_memory_limit_error_reads_well_survives_pickling_and_is_a_memory_error() -> None:
    error = MemoryLimitExceeded("tests.tasks.grow", 512 * MIB, 4242, "RLIMIT_AS")
    assert isinstance(error, hybrid.HybridError)
    assert isinstance(error, MemoryError)
    assert str(error) == (
        "tests.tasks.grow in worker 4242 was refused memory past its memory limit of "
        "512 MB (RLIMIT_AS); the worker is replaced"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.task_name, copy.limit_bytes, copy.pid, copy.how) == (
        "tests.tasks.grow",
        512 * MIB,
        4242,
        "RLIMIT_AS",
    )
    assert str(copy) == str(error)
    assert "was killed past" in str(MemoryLimitExceeded("f", MIB, 1, "killed"))


def test_memory_limit_errors_are_recognised_from_a_workers_summary() -> None:
    assert is_memory_limit_error("builtins.MemoryError: ")
    assert is_memory_limit_error("hybrid.isolation.MemoryLimitExceeded: f in worker 1 ...")
    assert not is_memory_limit_error("builtins.ValueError: MemoryError")
