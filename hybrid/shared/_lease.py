"""A call's shared-memory segments and their release, whatever way the call ended.

A call that ended normally has had its result taken (:meth:`Lease.take_result`); its
release hands the segments whose data was copied out (``bytes``, ``bytearray``) to the
spare pool for the next large call, and unlinks those a caller may still map. A call
that did not (error, timeout, crash, cancellation) may still have a worker writing its
result: release then leaves a tombstone, an empty file, before unlinking the result
segments, and a worker that creates a result segment checks for the tombstone right
after and removes its own segment. Tombstones hold no memory; they are removed a minute
later or when this process exits.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import io
import itertools
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import _landing, _segment, _spare
from ._published import COPIED_KINDS, SharedBytes

TOMBSTONE_SUFFIX = _segment.TOMBSTONE.lstrip("-")
TOMBSTONE_TTL_S = 60.0  # far longer than a killed worker takes to die
RELEASE_IN_THREAD_BYTES = 8 << 20  # freeing 100 MB of segments takes the kernel ~20 ms

_call_ids = itertools.count()
_process_token = secrets.token_hex(4)
_token_pid = os.getpid()
_tombstones: deque[tuple[float, str]] = deque()


@dataclass(frozen=True)
class Reply:
    """Where a worker puts a large result: sent to the worker with the call."""

    prefix: str
    threshold_bytes: int
    offer: str = ""  # a spare segment of the parent's the worker may write a result into
    offer_bytes: int = 0  # its capacity

    @property
    def tombstone(self) -> str:
        return f"{self.prefix}{TOMBSTONE_SUFFIX}"

    def result_name(self, index: int) -> str:
        return f"{self.prefix}r{index}"


@dataclass
class Lease:
    """The segments of one call. Always :meth:`release` it when the call has ended."""

    prefix: str
    handles: list[SharedBytes] = field(default_factory=list)
    reply: Reply | None = None
    settled: bool = False
    released: bool = False
    spares: dict[str, _spare.Spare] = field(default_factory=dict)  # argument segments
    offer: _spare.Spare | None = None
    landing: concurrent.futures.Future[io.BytesIO] | None = None

    def expect_result(self, size_bytes: int) -> None:
        """Prepare memory for a ``bytes`` result of about ``size_bytes`` while the call runs."""
        if (
            self.landing is None
            and self.reply is not None
            and not _landing.kept_is_free(size_bytes)
        ):
            self.landing = _landing.prepare_async(size_bytes)

    def take_result(self, packed_result: Any) -> Any:
        """The worker's result with its handles turned into values (segments unlinked)."""
        from ._payload import replace_handles

        value = replace_handles(packed_result, self._take)
        self.settled = True
        return value

    def _take(self, handle: SharedBytes) -> Any:
        offer = self.offer if self.offer is not None and self.offer.name == handle.name else None
        if offer is not None:
            self.offer = None
        try:
            value = self._land(handle) if handle.kind == "bytes" else None
            if value is None:
                value = handle.materialize()  # a read(2) into a new bytes: the GIL stays free
        except BaseException:
            if offer is not None:
                offer.discard()
            else:
                _segment.unlink(handle.name)
            raise
        if offer is not None and handle.kind in COPIED_KINDS:
            _spare.pool().give_back(offer)
        elif offer is not None:
            offer.discard()
        elif handle.kind in COPIED_KINDS:
            _spare.pool().adopt(handle.name)
        else:
            _segment.unlink(handle.name)
        return value

    def _land(self, handle: SharedBytes) -> bytes | None:
        """A large ``bytes`` result read into kept or prepared memory; None if none fits."""
        if handle.size_bytes < _landing.MIN_LANDING_BYTES:
            return None
        buffer = _landing.take_kept(handle.size_bytes)
        landing, self.landing = self.landing, None
        if buffer is None and landing is not None:
            with contextlib.suppress(Exception):  # preparing failed: read the plain way
                buffer = landing.result()
        elif landing is not None:
            _landing.discard(landing)
        if buffer is None:
            buffer = io.BytesIO(bytes(handle.size_bytes))
        value = _landing.land(buffer, handle.name, handle.size_bytes)
        if value is not None:
            _landing.keep(buffer)
        return value

    async def take_result_async(self, packed_result: Any) -> Any:
        """:meth:`take_result`, copying large results in a thread so the loop never stalls."""
        from ._payload import holds_handle

        if not holds_handle(packed_result):
            self.settled = True
            return packed_result
        return await asyncio.to_thread(self.take_result, packed_result)

    async def release_async(self) -> None:
        """:meth:`release`, in a thread when it frees enough memory to stall the loop.

        Cancellation: the release still happens, in full.
        """
        held_bytes = sum(handle.size_bytes for handle in self.handles)
        if self.offer is not None:
            held_bytes += self.offer.capacity_bytes
        if self.landing is not None:
            held_bytes += RELEASE_IN_THREAD_BYTES  # waiting for it must not block the loop
        if held_bytes < RELEASE_IN_THREAD_BYTES:
            self.release()
            return
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, self.release))

    def release(self) -> None:
        """Unlink every segment of the call; safe to call again, and after any ending."""
        if self.released:
            return
        self.released = True
        spares = _spare.pool()
        for handle in self.handles:
            spare = self.spares.pop(handle.name, None)
            if spare is None:
                _segment.unlink(handle.name)
            elif self.settled and handle.kind in COPIED_KINDS:
                spares.give_back(spare)  # the worker copied it out and is done with it
            else:
                spare.discard()
        landing, self.landing = self.landing, None
        if landing is not None:
            _landing.discard(landing)
        offer, self.offer = self.offer, None
        if offer is not None and self.settled:
            spares.give_back(offer)
        elif offer is not None:
            offer.discard()
        if self.reply is not None and not self.settled:
            _bury(self.reply)


def new_prefix() -> str:
    """A fresh segment-name prefix for one call (no system call in the common case)."""
    global _process_token, _token_pid
    if _token_pid != os.getpid():
        _process_token, _token_pid = secrets.token_hex(4), os.getpid()
    return f"{_segment.PREFIX}{_token_pid}-{_process_token}{next(_call_ids):x}-"


def _bury(reply: Reply) -> None:
    # The tombstone goes first: a worker creating a result after the scan below sees it.
    _segment.write_new(reply.tombstone, memoryview(b""))
    index = 0
    while _segment.unlink(reply.result_name(index)):
        index += 1
    now = time.monotonic()
    _tombstones.append((now, reply.tombstone))
    while _tombstones and _tombstones[0][0] < now - TOMBSTONE_TTL_S:
        _segment.unlink(_tombstones.popleft()[1])


@atexit.register
def _remove_tombstones() -> None:
    if _token_pid == os.getpid():
        while _tombstones:
            _segment.unlink(_tombstones.popleft()[1])
