"""Large payloads through shared memory: published buffers and per-call arguments and results."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import hybrid
from hybrid import LeaseReleased
from hybrid.shared import (
    leftover_segments,
    pack,
    pack_async,
    pack_result,
    publish,
    remove_orphaned_segments,
    unpack,
    unpack_result,
)
from hybrid.shared._payload import call_packed

from . import workers

MiB = 1 << 20


async def run_packed(
    engine: hybrid.Engine,
    fn: Callable[..., Any],
    *args: Any,
    threshold_bytes: int = MiB,
    timeout: float | None = None,
) -> Any:
    """What engine.run will do transparently: pack, run, unpack, and always release."""
    packed, lease = await pack_async(args, threshold_bytes)
    try:
        packed_result = await engine.run(call_packed, fn, packed, lease.reply, timeout=timeout)
        return await lease.take_result_async(packed_result)
    finally:
        lease.release()


async def test_published_buffer_is_mapped_by_every_worker_without_a_copy(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=2)
    data = os.urandom(4 * MiB)
    with publish(data) as published:
        replies = await asyncio.gather(
            *(engine.run(workers.digest_of_handle, published.handle) for _ in range(8))
        )
        assert leftover_segments() == [published.handle.name]
    assert {digest for _, digest, _ in replies} == {hashlib.sha256(data).hexdigest()}
    assert all(readonly for _, _, readonly in replies)
    assert {pid for pid, _, _ in replies} <= {w.pid for w in engine.stats().per_worker}
    assert os.getpid() not in {pid for pid, _, _ in replies}
    assert leftover_segments() == []


async def test_published_buffer_works_with_spawned_workers_and_leaves_nothing(
    make_engine: Callable[..., Any],
) -> None:
    # Python 3.11's resource tracker would unlink or warn about a segment a spawned child
    # attached to; these segments are plain files that nothing tracks.
    engine = await make_engine(workers=1, start_method="spawn")
    with publish(bytearray(b"abc" * MiB)) as published:
        _, digest, _ = await engine.run(workers.digest_of_handle, published.handle)
        _, again, _ = await engine.run(workers.digest_of_handle, published.handle)
    assert digest == again == hashlib.sha256(b"abc" * MiB).hexdigest()
    assert leftover_segments() == []


async def test_large_argument_and_result_round_trip_through_shared_memory(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    data = os.urandom(3 * MiB)
    packed, lease = pack((data,), MiB)
    assert len(lease.handles) == 1
    assert len(repr(packed)) < 200
    lease.release()
    assert await run_packed(engine, workers.reverse_bytes, data) == data[::-1]
    assert leftover_segments() == []


async def test_types_are_kept_and_small_values_stay_in_the_pipe(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    kind, size, extra = await run_packed(
        engine, workers.describe_args, bytearray(2 * MiB), b"small"
    )
    assert (kind, size, extra) == ("bytearray", 2 * MiB, "bytes")
    kind, size, _ = await run_packed(engine, workers.describe_args, memoryview(bytes(MiB)), 1)
    assert (kind, size) == ("memoryview", MiB)
    assert leftover_segments() == []


async def test_segments_are_released_when_the_task_raises(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    with pytest.raises(ValueError, match="refused"):
        await run_packed(engine, workers.fail_with, bytes(2 * MiB))
    assert leftover_segments() == []


async def test_segments_are_released_after_a_timeout_and_a_crash(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    with pytest.raises(hybrid.TaskTimeout):
        await run_packed(engine, workers.sleep_with, bytes(2 * MiB), 30, timeout=0.5)
    assert leftover_segments() == []
    with pytest.raises(hybrid.WorkerCrashed):
        await run_packed(engine, workers.die_with, bytes(2 * MiB))
    assert leftover_segments() == []


async def test_segments_are_released_when_the_caller_is_cancelled(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    call = asyncio.ensure_future(run_packed(engine, workers.sleep_with, bytes(2 * MiB), 30))
    await asyncio.sleep(0.5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert leftover_segments() == []


async def test_a_result_made_after_the_lease_was_released_is_removed_by_the_worker(
    make_engine: Callable[..., Any],
) -> None:
    engine = await make_engine(workers=1)
    _, lease = pack((bytes(10),), MiB)
    lease.release()
    with pytest.raises(LeaseReleased):
        await engine.run(call_packed, workers.sleep_with, (bytes(2 * MiB), 0), lease.reply)
    assert leftover_segments() == []


async def test_a_caller_cancelled_while_packing_leaves_nothing_behind() -> None:
    data = bytes(64 * MiB)
    for delay_s in (0, 0.001, 0.01):
        packing = asyncio.ensure_future(pack_async((data,), MiB))
        await asyncio.sleep(delay_s)
        packing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            _, lease = await packing
            lease.release()
    deadline = time.monotonic() + 10
    while leftover_segments() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # the copy thread finishes, then the lease is released
    assert leftover_segments() == []


def test_unpack_maps_memoryviews_without_copying_and_copies_bytes() -> None:
    packed, lease = pack((b"a" * MiB, memoryview(b"b" * MiB)), MiB)
    try:
        as_bytes, as_view = unpack(packed)
        assert type(as_bytes) is bytes
        assert type(as_view) is memoryview
        assert as_view.readonly
        assert bytes(as_view[:2]) == b"bb"
    finally:
        lease.release()
    assert bytes(as_view[-2:]) == b"bb"  # a mapping outlives the unlink
    assert leftover_segments() == []


def test_pack_result_leaves_small_results_alone_and_fails_cleanly_when_released() -> None:
    _, lease = pack((), MiB)
    assert lease.reply is not None
    assert pack_result(b"tiny", lease.reply) == b"tiny"
    lease.release()
    with pytest.raises(LeaseReleased):
        pack_result(bytes(MiB), lease.reply)
    assert leftover_segments() == []


def test_only_a_call_that_ended_abnormally_leaves_a_tombstone_and_no_memory() -> None:
    earlier = leftover_segments(tombstones=True)  # tombstones of earlier tests' abandoned calls
    _, settled = pack((), MiB)
    assert settled.reply is not None
    big = pack_result(bytes(MiB), settled.reply)
    assert settled.take_result(big) == bytes(MiB)
    settled.release()
    assert leftover_segments(tombstones=True) == earlier
    _, abandoned = pack((), MiB)
    assert abandoned.reply is not None
    pack_result(bytes(MiB), abandoned.reply)  # the worker finished; the parent gave up
    abandoned.release()
    assert leftover_segments() == []
    assert leftover_segments(tombstones=True) == sorted([*earlier, abandoned.reply.tombstone])


def test_unpack_result_turns_handles_into_values_and_frees_them() -> None:
    _, lease = pack((), MiB)
    assert lease.reply is not None
    packed = pack_result({"page": b"p" * MiB, "n": 1}, lease.reply)
    assert unpack_result(packed) == {"page": b"p" * MiB, "n": 1}
    lease.release()
    assert leftover_segments() == []


def test_segments_of_a_dead_owner_are_swept() -> None:
    code = (
        "import os; from hybrid.shared import publish; "
        "p = publish(b'x' * 4096); print(p.handle.name, flush=True); os._exit(0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    name = done.stdout.strip()
    owner_pid = int(name.split("-")[2])
    assert leftover_segments(owner_pid) == [name]
    assert name in remove_orphaned_segments()
    assert leftover_segments(owner_pid) == []


async def test_numpy_arrays_travel_without_pickling_when_numpy_is_installed(
    make_engine: Callable[..., Any],
) -> None:
    # NumPy is not a dependency of hybrid; this runs wherever it happens to be installed.
    numpy = pytest.importorskip("numpy")
    engine = await make_engine(workers=1)
    array = numpy.arange(500_000, dtype=numpy.float64).reshape(500, 1000)
    doubled = await run_packed(engine, workers.double_array, array)
    assert isinstance(doubled, numpy.ndarray)
    assert doubled.shape == (500, 1000)
    assert numpy.array_equal(doubled, array * 2)
    assert leftover_segments() == []
