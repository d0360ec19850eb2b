"""A call's shared-memory segments and their release, whatever way the call ended.

A call that ended normally has had its result taken (:meth:`Lease.take_result`), which
unlinked the result segments; its release only unlinks the argument segments. A call
that did not (error, timeout, crash, cancellation) may still have a worker writing its
result: release then leaves a tombstone, an empty file, before unlinking the result
segments, and a worker that creates a result segment checks for the tombstone right
after and removes its own segment. Tombstones hold no memory; they are removed a minute
later or when this process exits.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import _segment
from ._memory import SharedBytes

TOMBSTONE_SUFFIX = _segment.TOMBSTONE.lstrip("-")
TOMBSTONE_TTL_S = 60.0  # far longer than a killed worker takes to die

_call_ids = itertools.count()
_process_token = secrets.token_hex(4)
_token_pid = os.getpid()
_tombstones: deque[tuple[float, str]] = deque()


class LeaseReleased(RuntimeError):
    """The parent released the call's lease before the worker could return its result."""


@dataclass(frozen=True)
class Reply:
    """Where a worker puts a large result: sent to the worker with the call."""

    prefix: str
    threshold_bytes: int

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

    def take_result(self, packed_result: Any) -> Any:
        """The worker's result with its handles turned into values (segments unlinked)."""
        from ._payload import unpack_result

        value = unpack_result(packed_result)
        self.settled = True
        return value

    async def take_result_async(self, packed_result: Any) -> Any:
        """:meth:`take_result`, copying large results in a thread so the loop never stalls."""
        from ._payload import holds_handle

        if not holds_handle(packed_result):
            self.settled = True
            return packed_result
        return await asyncio.to_thread(self.take_result, packed_result)

    def release(self) -> None:
        """Unlink every segment of the call; safe to call again, and after any ending."""
        if self.released:
            return
        self.released = True
        for handle in self.handles:
            _segment.unlink(handle.name)
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
