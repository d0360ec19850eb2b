"""Large arguments and results through shared memory instead of the pipe.

The parent packs a call's arguments, the worker unpacks them, runs the function and
packs its result, the parent unpacks the result, and the parent always releases the
lease, however the call ended::

    packed, lease = pack(args, threshold_bytes=1 << 20)
    try:
        packed_result = await loop.run_in_executor(pool, call_packed, fn, packed, lease.reply)
        result = unpack_result(packed_result)
    finally:
        lease.release()

A result segment is created by the worker under the lease's name prefix. A worker that
is killed mid-write leaves a partial segment: ``release`` removes it. A worker that
outlives the lease (it was timed out or cancelled but not yet killed) finds the lease's
marker gone after creating its segment and removes the segment itself.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _segment
from ._memory import SharedBytes, handle_for, size_of

DEFAULT_THRESHOLD_BYTES = 1 << 20  # below a MiB the pipe is as fast as a segment


class LeaseReleased(RuntimeError):
    """The parent released the call's lease before the worker could return its result."""


@dataclass(frozen=True)
class Reply:
    """Where a worker puts a large result: sent to the worker with the call."""

    prefix: str
    threshold_bytes: int

    @property
    def marker(self) -> str:
        return f"{self.prefix}live"

    def result_name(self, index: int) -> str:
        return f"{self.prefix}r{index}"


@dataclass
class Lease:
    """The segments of one call; :meth:`release` unlinks them all (argument and result)."""

    handles: list[SharedBytes] = field(default_factory=list)
    reply: Reply | None = None
    released: bool = False

    def release(self) -> None:
        """Unlink every segment of the call; safe to call again and after a crash."""
        if self.released:
            return
        self.released = True
        for handle in self.handles:
            _segment.unlink(handle.name)
        if self.reply is not None:
            # The marker goes first: a worker that creates a result after this sees it gone.
            _segment.unlink(self.reply.marker)
            index = 0
            while _segment.unlink(self.reply.result_name(index)):
                index += 1


def pack(
    obj: Any, threshold_bytes: int = DEFAULT_THRESHOLD_BYTES, *, reply: bool = True
) -> tuple[Any, Lease]:
    """Replace buffers of at least ``threshold_bytes`` inside ``obj`` with shared-memory handles.

    Looks inside tuples, lists and dict values (the shapes of ``args`` and ``kwargs``).
    Call in the parent, before sending the call.

    Args:
        obj: the call's arguments.
        threshold_bytes: buffers this large or larger travel through shared memory.
        reply: also let the worker return a large result through shared memory
            (costs one empty marker file per call).

    Returns:
        ``(packed_obj, lease)``: send ``packed_obj`` and ``lease.reply``; always call
        ``lease.release()`` when the call has ended, whatever way it ended.
    """
    prefix = f"{_segment.PREFIX}{os.getpid()}-{secrets.token_hex(8)}-"
    lease = Lease(reply=Reply(prefix, threshold_bytes) if reply else None)
    try:
        if lease.reply is not None:
            _segment.write_new(lease.reply.marker, memoryview(b""))
        counter = iter(range(1 << 62))

        def share(value: Any) -> Any:
            name = f"{prefix}a{next(counter)}"
            handle = handle_for(value, name)
            assert handle is not None
            _segment.write_new(name, memoryview(value))
            lease.handles.append(handle)
            return handle

        packed = _replace(obj, lambda value: size_of(value) >= threshold_bytes, share)
    except BaseException:
        lease.release()
        raise
    return packed, lease


async def pack_async(
    obj: Any, threshold_bytes: int = DEFAULT_THRESHOLD_BYTES, *, reply: bool = True
) -> tuple[Any, Lease]:
    """:func:`pack` without stalling the event loop: large copies happen in a thread.

    Cancellation: if the caller is cancelled while the copy runs, the lease is released
    as soon as the copy ends; nothing is left behind.
    """
    if not _holds_large(obj, threshold_bytes):
        return pack(obj, threshold_bytes, reply=reply)
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, functools.partial(pack, obj, threshold_bytes, reply=reply))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_release_packed)
        raise


async def unpack_result_async(packed: Any) -> Any:
    """:func:`unpack_result` without stalling the event loop: large copies happen in a thread."""
    if not _holds_handle(packed):
        return packed
    return await asyncio.to_thread(unpack_result, packed)


def _release_packed(future: asyncio.Future[tuple[Any, Lease]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result()[1].release()


def _holds_large(obj: Any, threshold_bytes: int) -> bool:
    found: list[Any] = []
    _replace(obj, lambda value: size_of(value) >= threshold_bytes, found.append)
    return bool(found)


def _holds_handle(obj: Any) -> bool:
    found: list[Any] = []
    _replace(obj, _is_handle, found.append)
    return bool(found)


def unpack(obj: Any) -> Any:
    """Turn handles inside ``obj`` back into values of their original types (in the worker)."""
    return _replace(obj, _is_handle, _materialize)


def pack_result(value: Any, reply: Reply | None) -> Any:
    """Put a large result in shared memory for the parent (in the worker).

    Raises:
        LeaseReleased: the parent gave up on the call meanwhile; nothing is left behind.
    """
    if reply is None:
        return value
    created: list[str] = []
    counter = iter(range(1 << 62))

    def share(buffer: Any) -> Any:
        name = reply.result_name(next(counter))
        handle = handle_for(buffer, name)
        assert handle is not None
        _segment.write_new(name, memoryview(buffer))
        created.append(name)
        if not _segment.path_of(reply.marker).exists():
            raise LeaseReleased(f"lease {reply.prefix} was released before the result")
        return handle

    try:
        return _replace(value, lambda item: size_of(item) >= reply.threshold_bytes, share)
    except BaseException:
        for name in created:
            _segment.unlink(name)
        raise


def unpack_result(packed: Any) -> Any:
    """Turn result handles back into values and unlink their segments (in the parent)."""

    def take(handle: SharedBytes) -> Any:
        try:
            return handle.materialize()
        finally:
            _segment.unlink(handle.name)

    return _replace(packed, _is_handle, take)


def call_packed(fn: Callable[..., Any], packed_args: Any, reply: Reply | None) -> Any:
    """Worker side in one call: unpack ``packed_args`` (a tuple), run ``fn``, pack its result."""
    return pack_result(fn(*unpack(packed_args)), reply)


def call_packed_kw(
    fn: Callable[..., Any], packed_args: Any, packed_kwargs: Any, reply: Reply | None
) -> Any:
    """Like :func:`call_packed`, with keyword arguments."""
    return pack_result(fn(*unpack(packed_args), **unpack(packed_kwargs)), reply)


def _is_handle(value: Any) -> bool:
    return type(value) is SharedBytes


def _materialize(handle: SharedBytes) -> Any:
    return handle.materialize()


def _replace(obj: Any, wanted: Callable[[Any], bool], swap: Callable[[Any], Any]) -> Any:
    """``obj`` with every wanted leaf swapped, rebuilt only where something changed."""
    if wanted(obj):
        return swap(obj)
    kind = type(obj)
    if kind is tuple or kind is list:
        items = [_replace(item, wanted, swap) for item in obj]
        if all(new is old for new, old in zip(items, obj, strict=True)):
            return obj
        return tuple(items) if kind is tuple else items
    if kind is dict:
        changed = {key: _replace(value, wanted, swap) for key, value in obj.items()}
        if all(changed[key] is value for key, value in obj.items()):
            return obj
        return changed
    return obj
