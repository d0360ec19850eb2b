"""Results are handed to callers a slice per loop iteration (the flood-lag fix)."""

from __future__ import annotations

import asyncio

from hybrid._core.resolving import Resolver


async def one_iteration() -> None:
    await asyncio.sleep(0)


async def test_a_large_batch_wakes_its_callers_a_slice_per_iteration() -> None:
    loop = asyncio.get_running_loop()
    resolver = Resolver(slice_size=2)
    futures = [loop.create_future() for _ in range(5)]
    for number, future in enumerate(futures):
        resolver.set_result(future, number)
    assert [future.done() for future in futures] == [True, True, False, False, False]
    await one_iteration()
    assert sum(future.done() for future in futures) == 4
    await one_iteration()
    assert [future.result() for future in futures] == [0, 1, 2, 3, 4]


async def test_a_future_cancelled_while_it_waits_its_turn_is_skipped() -> None:
    loop = asyncio.get_running_loop()
    resolver = Resolver(slice_size=1)
    first, second, third = (loop.create_future() for _ in range(3))
    for future in (first, second, third):
        resolver.set_result(future, "value")
    second.cancel()
    await one_iteration()
    await one_iteration()
    assert second.cancelled()
    assert third.result() == "value"


async def test_small_batches_are_set_at_once_each_iteration() -> None:
    loop = asyncio.get_running_loop()
    resolver = Resolver(slice_size=4)
    for _ in range(3):
        futures = [loop.create_future() for _ in range(3)]
        for future in futures:
            resolver.set_result(future, 1)
        assert all(future.done() for future in futures)
        await one_iteration()
