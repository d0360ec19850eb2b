"""Large arguments and results through shared memory instead of the pipe.

The parent packs a call's arguments, the worker unpacks them, runs the function and
packs its result, the parent takes the result, and the parent always releases the
lease, however the call ended::

    packed, lease = await pack_async(args, threshold_bytes=1 << 20)
    try:
        packed_result = await engine.run(call_packed, fn, packed, lease.reply)
        result = await lease.take_result_async(packed_result)
    finally:
        lease.release()

A call with no large argument and a small result costs a walk over its arguments and
no system call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import Callable
from typing import Any

from .._core.worker_loop import awaited
from .._errors import LeaseReleased
from . import _landing, _segment, _spare
from ._lease import Lease, Reply, new_prefix
from ._published import SharedBytes, handle_for, size_of

DEFAULT_THRESHOLD_BYTES = 1 << 20  # below a MiB the pipe is as fast as a segment
BUFFER_TYPES = frozenset({bytes, bytearray, memoryview})  # and NumPy arrays (see is_plain_ndarray)
MAX_NOTED_FUNCTIONS = 256  # functions remembered for returning large buffers

_large_returners: dict[Any, int] = {}  # function -> size of its last large bytes result, or 0


def pack(
    obj: Any, threshold_bytes: int = DEFAULT_THRESHOLD_BYTES, *, reply: bool = True
) -> tuple[Any, Lease]:
    """Replace buffers of at least ``threshold_bytes`` inside ``obj`` with shared-memory handles.

    Looks inside tuples, lists and dict values (the shapes of ``args`` and ``kwargs``).
    Call in the parent, before sending the call. The copy into shared memory happens
    here: from a coroutine, use :func:`pack_async`.

    Args:
        obj: the call's arguments.
        threshold_bytes: buffers this large or larger travel through shared memory.
        reply: also let the worker return large results through shared memory.

    Returns:
        ``(packed_obj, lease)``: send ``packed_obj`` and ``lease.reply`` to the worker;
        take the result with ``lease.take_result``; always call ``lease.release()``
        when the call has ended, whatever way it ended.
    """
    prefix = new_prefix()
    spares = _spare.pool()
    lease = Lease(prefix)
    if reply:
        lease.offer = spares.take_largest(f"{prefix}o")
        offer = lease.offer
        lease.reply = Reply(
            prefix,
            threshold_bytes,
            offer.name if offer else "",
            offer.capacity_bytes if offer else 0,
        )

    names = (f"{prefix}a{index}" for index in itertools.count())

    def share(value: Any) -> Any:
        spare = spares.take(size_of(value), next(names))
        lease.spares[spare.name] = spare
        handle = handle_for(value, spare.name)
        assert handle is not None
        spare.write(memoryview(value))
        lease.handles.append(handle)
        return handle

    try:
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
    if not holds_large(obj, threshold_bytes):
        return pack(obj, threshold_bytes, reply=reply)
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, functools.partial(pack, obj, threshold_bytes, reply=reply))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_release_packed)
        raise


def unpack(obj: Any) -> Any:
    """Turn handles inside ``obj`` back into values of their original types (in the worker).

    ``bytes`` and ``bytearray`` are copied out; ``memoryview`` and NumPy arrays map the
    segment read-only, without a copy.
    """
    return _replace(obj, _is_handle, _materialize)


def pack_result(value: Any, reply: Reply | None) -> Any:
    """Put large buffers of a result in shared memory for the parent (in the worker).

    Raises:
        LeaseReleased: the parent gave up on the call meanwhile; nothing is left behind.
    """
    if reply is None:
        return value
    created: list[str] = []
    names = (reply.result_name(index) for index in itertools.count())
    offered = [reply.offer] if reply.offer else []

    def share(buffer: Any) -> Any:
        if offered and size_of(buffer) <= reply.offer_bytes:
            handle = handle_for(buffer, offered[0])
            assert handle is not None
            if _segment.write_existing(handle.name, memoryview(buffer)):
                offered.clear()
                return handle
        handle = handle_for(buffer, next(names))
        assert handle is not None
        _segment.write_new(handle.name, memoryview(buffer))
        created.append(handle.name)
        if _segment.path_of(reply.tombstone).exists():
            raise LeaseReleased(f"the call {reply.prefix} ended before its result was ready")
        return handle

    try:
        return _replace(value, lambda item: size_of(item) >= reply.threshold_bytes, share)
    except BaseException:
        for name in created:
            _segment.unlink(name)
        raise


def unpack_result(packed: Any) -> Any:
    """Turn result handles back into values and unlink their segments (in the parent).

    Prefer ``lease.take_result``, which also tells the lease the call ended normally.
    """

    def take(handle: SharedBytes) -> Any:
        try:
            return handle.materialize()
        finally:
            _segment.unlink(handle.name)

    return _replace(packed, _is_handle, take)


def replace_handles(packed: Any, take: Callable[[SharedBytes], Any]) -> Any:
    """``packed`` with every handle swapped for ``take(handle)``."""
    return _replace(packed, _is_handle, take)


def call_packed(fn: Callable[..., Any], packed_args: Any, reply: Reply | None) -> Any:
    """Worker side in one call: unpack ``packed_args`` (a tuple), run ``fn``, pack its result."""
    return pack_result(awaited(fn(*unpack(packed_args))), reply)


def call_packed_kw(
    fn: Callable[..., Any], packed_args: Any, packed_kwargs: Any, reply: Reply | None
) -> Any:
    """Like :func:`call_packed`, with keyword arguments."""
    return pack_result(awaited(fn(*unpack(packed_args), **unpack(packed_kwargs))), reply)


def returns_large(fn: Callable[..., Any]) -> bool:
    """True if ``fn`` returned a large buffer before (:func:`note_result`)."""
    try:
        return fn in _large_returners
    except TypeError:  # an unhashable callable
        return False


def expected_result_bytes(fn: Callable[..., Any]) -> int:
    """The size of ``fn``'s last large ``bytes`` result; 0 if it was another kind or none."""
    try:
        return _large_returners.get(fn, 0)
    except TypeError:
        return 0


def note_result(fn: Callable[..., Any], value: Any, threshold_bytes: int) -> None:
    """Remember ``fn`` if ``value`` is a large buffer, so its next calls get a reply segment."""
    size_bytes = size_of(value)
    if size_bytes >= threshold_bytes:
        if len(_large_returners) >= MAX_NOTED_FUNCTIONS:
            _large_returners.clear()
        with contextlib.suppress(TypeError):
            _large_returners[fn] = size_bytes if type(value) is bytes else 0


def holds_large(obj: Any, threshold_bytes: int = DEFAULT_THRESHOLD_BYTES) -> bool:
    """True if :func:`pack` would move something in ``obj`` to shared memory."""
    found: list[Any] = []
    _replace(obj, lambda value: size_of(value) >= threshold_bytes, found.append)
    return bool(found)


def holds_handle(obj: Any) -> bool:
    """True if ``obj`` holds shared-memory handles (a packed result)."""
    found: list[Any] = []
    _replace(obj, _is_handle, found.append)
    return bool(found)


def _release_packed(future: asyncio.Future[tuple[Any, Lease]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result()[1].release()


def _is_handle(value: Any) -> bool:
    return type(value) is SharedBytes


def _materialize(handle: SharedBytes) -> Any:
    if handle.kind == "bytes" and handle.size_bytes >= _landing.MIN_LANDING_BYTES:
        return _landing.receive(handle.name, handle.size_bytes)
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
