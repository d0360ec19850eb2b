"""Large inputs of ``engine.map`` through shared memory, one task each, always released.

An input that is itself a buffer (bytes, bytearray, memoryview, NumPy array) of at least
the engine's ``share_threshold_bytes`` goes alone, as a task of ``call_packed``: its
buffer is copied into a segment, and the call's large results come back the same way.
Buffers nested inside other inputs (a tuple holding bytes) travel through the pipe, so
that every other input costs one set lookup of its type.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..shared import Lease, call_packed, pack_async
from ..shared._published import size_of

if TYPE_CHECKING:
    from .engine import Engine
    from .task import Task


class MapPayloads:
    """The leases of one map's large inputs, from submission to their result or release."""

    def __init__(self, threshold_bytes: int) -> None:
        self.threshold_bytes = threshold_bytes
        self.buffer_types: set[type] = {bytes, bytearray, memoryview}
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            self.buffer_types.add(numpy.ndarray)
        self.leases: dict[Task, Lease] = {}

    def is_large(self, item: Any) -> bool:
        return type(item) in self.buffer_types and size_of(item) >= self.threshold_bytes

    def split(self, items: list[Any]) -> tuple[list[Any], list[Any]]:
        """``(to submit now, to put back)``: a large input always goes alone."""
        if self.buffer_types.isdisjoint(map(type, items)):
            return items, []
        for index, item in enumerate(items):
            if self.is_large(item):
                cut = index or 1
                return items[:cut], items[cut:]
        return items, []

    async def submit(
        self, engine: Engine, fn: Callable[..., Any], item: Any, **options: Any
    ) -> Task:
        """Submit ``fn(item)`` with ``item`` in shared memory."""
        packed, lease = await pack_async((item,), self.threshold_bytes)
        try:
            task = await engine._submit_calls(
                call_packed, [(fn, packed, lease.reply)], chunk=False, described_as=fn, **options
            )
        except BaseException:
            lease.release()
            raise
        self.leases[task] = lease
        return task

    async def take(self, task: Task, packed_result: Any) -> Any:
        """The result of a task :meth:`submit` made, its segments released."""
        lease = self.leases.pop(task, None)
        if lease is None:
            return packed_result
        try:
            return await lease.take_result_async(packed_result)
        finally:
            await lease.release_async()

    def release_all(self) -> None:
        """Release every lease not yet taken (the map is closing or failed)."""
        leases, self.leases = self.leases, {}
        for lease in leases.values():
            lease.release()
