"""Landing buffers: memory for a large ``bytes`` read from a segment, faulted in beforehand.

Reading 100 MB into a new ``bytes`` costs the page faults of fresh memory about three
times as much as the copy itself. Two ways around them:

- Reuse: the buffer whose ``bytes`` was handed over last is kept (one per process); once
  nobody else holds that ``bytes`` any more, the next large value lands in its memory.
- Preparation: when a function's last result was large, the parent prepares a buffer of
  that size in a thread while the worker computes (the faults happen there, on the
  other core).

A buffer is an ``io.BytesIO`` around a ``bytes``: filled through ``getbuffer()`` and cut to
size, ``getvalue()`` hands over that very ``bytes`` without a copy. BytesIO itself never
writes into a ``bytes`` that anything else references (it copies first), so reuse is
safe by construction; the reference count is checked only to skip that wasted copy.
Every step runs with the GIL released or in constant time, so an event loop never waits.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import os
import sys
import threading
import time

from . import _segment

# Above glibc's largest mmap threshold (32 MiB) calloc takes fresh pages without a
# memset, so preparing never holds the GIL for long; smaller results fault cheaply anyway.
MIN_LANDING_BYTES = (32 << 20) + 1

KEPT_IDLE_S = 10.0  # a kept buffer unused this long is let go
_REFERENCES_WHEN_FREE = 3  # the BytesIO's, ours, and getrefcount's argument

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def prepare_async(size_bytes: int) -> concurrent.futures.Future[io.BytesIO] | None:
    """Start preparing a buffer of ``size_bytes`` in a thread; None if too small to help."""
    global _executor
    if size_bytes < MIN_LANDING_BYTES or not hasattr(os, "preadv"):
        return None
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(2, "hybrid-landing")
    return _executor.submit(prepare, size_bytes)


def prepare(size_bytes: int) -> io.BytesIO:
    """A buffer of ``size_bytes`` whose pages are in memory (faulted by reading zeros)."""
    buffer = io.BytesIO(bytes(size_bytes))
    zeros = os.open("/dev/zero", os.O_RDONLY)
    try:
        with buffer.getbuffer() as view:
            done = 0
            while done < size_bytes:
                done += os.readv(zeros, [view[done:]])
    finally:
        os.close(zeros)
    return buffer


def land(buffer: io.BytesIO, name: str, size_bytes: int) -> bytes | None:
    """Segment ``name``'s first ``size_bytes`` as ``bytes``, read into ``buffer``.

    ``buffer`` stays open: :func:`keep` it for the next value. Returns None (and
    ``buffer`` is left as it was) if ``buffer`` is too small.
    """
    with buffer.getbuffer() as view:
        if view.nbytes < size_bytes:
            return None
        fd = os.open(_segment.path_of(name), os.O_RDONLY)
        try:
            done = 0
            while done < size_bytes:
                read = os.preadv(fd, [view[done:size_bytes]], done)
                if read == 0:
                    raise ValueError(f"segment {name} holds {done} bytes, expected {size_bytes}")
                done += read
        finally:
            os.close(fd)
    buffer.truncate(size_bytes)
    return buffer.getvalue()


def receive(name: str, size_bytes: int) -> bytes:
    """Segment ``name``'s first ``size_bytes`` as a new ``bytes``, landed in kept memory if
    it is free (a worker calls this for a large ``bytes`` argument)."""
    buffer = take_kept(size_bytes)
    if buffer is None:
        buffer = io.BytesIO(bytes(size_bytes))  # fresh pages: faulted during the read
    value = land(buffer, name, size_bytes)
    assert value is not None
    keep(buffer)
    return value


class _Kept:
    buffer: io.BytesIO | None = None
    since: float = 0.0
    pid: int = 0
    timer: threading.Timer | None = None


_kept = _Kept()
_kept_lock = threading.Lock()


def keep(buffer: io.BytesIO) -> None:
    """Keep ``buffer`` (whose ``bytes`` was just handed over) for the next large value."""
    with _kept_lock:
        if _kept.pid != os.getpid():
            _kept.buffer, _kept.timer = None, None  # a forked child's copies: not ours
        old, _kept.buffer = _kept.buffer, buffer
        _kept.since, _kept.pid = time.monotonic(), os.getpid()
        if _kept.timer is None:
            _kept.timer = threading.Timer(KEPT_IDLE_S, _let_go_when_idle)
            _kept.timer.daemon = True
            _kept.timer.start()
    if old is not None:
        old.close()


def take_kept(size_bytes: int) -> io.BytesIO | None:
    """The kept buffer, if it holds ``size_bytes`` and its ``bytes`` is free again."""
    with _kept_lock:
        buffer, _kept.buffer = _kept.buffer, None
        if _kept.pid != os.getpid():
            buffer = None  # a forked child's copy
    if buffer is None:
        return None
    if _free_for(buffer, size_bytes):
        return buffer
    buffer.close()  # the bytes it handed over stays as it is
    return None


def kept_is_free(size_bytes: int) -> bool:
    """True if :func:`take_kept` would now return a buffer for ``size_bytes``."""
    with _kept_lock:
        buffer = _kept.buffer if _kept.pid == os.getpid() else None
        return buffer is not None and _free_for(buffer, size_bytes)


def let_go() -> None:
    """Drop the kept buffer now."""
    with _kept_lock:
        buffer, _kept.buffer = _kept.buffer, None
    if buffer is not None:
        buffer.close()


def _free_for(buffer: io.BytesIO, size_bytes: int) -> bool:
    if buffer.closed or not hasattr(sys, "getrefcount"):
        return False
    value = buffer.getvalue()  # the very bytes handed over, unless it had to be copied
    return len(value) >= size_bytes and sys.getrefcount(value) <= _REFERENCES_WHEN_FREE


def _let_go_when_idle() -> None:
    with _kept_lock:
        _kept.timer = None
        idle_s = time.monotonic() - _kept.since
        if _kept.buffer is None:
            return
        if idle_s < KEPT_IDLE_S:
            _kept.timer = threading.Timer(KEPT_IDLE_S - idle_s, _let_go_when_idle)
            _kept.timer.daemon = True
            _kept.timer.start()
            return
    let_go()


def discard(landing: concurrent.futures.Future[io.BytesIO]) -> None:
    """Let a buffer go unused (waits for its preparation to end; frees it in this thread)."""
    if landing.cancel():
        return
    with contextlib.suppress(Exception):
        landing.result().close()
