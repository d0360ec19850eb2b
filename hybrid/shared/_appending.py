"""Appending whole lines to a file that several processes write: locked or optimistic."""

from __future__ import annotations

import fcntl
import os
import random
import re
import time
from dataclasses import dataclass

from .._errors import OptimisticConflict

_TAIL_CHUNK_BYTES = 65536  # read backwards this much at a time to find the last newline


def append_locked(fd: int, data: bytes, header: bytes = b"") -> None:
    """Append ``data`` under an exclusive flock; cut off a torn tail a killed writer left first.

    ``fd`` is opened with ``O_RDWR | O_APPEND``. ``header`` is written first when the
    file is empty (a CSV header).
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # A writer died mid-write: its record was never acknowledged, so it goes.
            size = last_line_end(fd, size)
            os.ftruncate(fd, size)
        write_all(fd, header + data if size == 0 else data)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def last_line_end(fd: int, size: int) -> int:
    """Offset just past the last newline before ``size`` (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK_BYTES)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if offset is not None:
            offset += written
        view = view[written:]


# Optimistic appending, for file systems where flock does not hold (some NFS setups).
# The file starts with a fixed-width header: version, committed length, last writer.
# A writer claims the next region by writing the header, checks that its claim stuck,
# writes its lines there, then checks the header and reads its lines back. Any change
# means another writer raced it: it retries at the new end. Readers only read up to the
# committed length. Without an atomic primitive the race can be narrowed, not closed:
# a writer stalled for longer than SETTLE_S between its check and its write can still
# collide with another one; flock is the safe choice wherever it works.

HEADER_BYTES = 80
_HEADER = re.compile(rb"^#hybrid-sink v=(\d{20}) n=(\d{20}) w=([0-9a-f]{16}) *\n$")
# Time a claim must survive before the writer trusts it. A rival that read the header
# before our claim must stall at least this long to collide with us: on a loaded machine
# stalls of a millisecond are common (the exactly-once test caught one under CI load).
SETTLE_S = 0.005
MAX_ATTEMPTS = 1000


@dataclass(frozen=True)
class Header:
    version: int
    committed_bytes: int
    writer: str

    def encode(self) -> bytes:
        text = f"#hybrid-sink v={self.version:020d} n={self.committed_bytes:020d} w={self.writer}"
        return text.encode().ljust(HEADER_BYTES - 1) + b"\n"


def read_header(fd: int) -> Header:
    return parse_header(os.pread(fd, HEADER_BYTES, 0))


def parse_header(raw: bytes) -> Header:
    match = _HEADER.match(raw)
    if match is None:
        raise ValueError(f"not an optimistic sink header: {raw[:HEADER_BYTES]!r}")
    return Header(int(match.group(1)), int(match.group(2)), match.group(3).decode())


def ensure_header(path: str, mode: int = 0o600) -> None:
    """Create the file (with ``mode``) with an empty header unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        return
    try:
        write_all(fd, Header(0, HEADER_BYTES, "0" * 16).encode(), 0)
    finally:
        os.close(fd)


def append_optimistic(fd: int, data: bytes, writer: str, header: bytes = b"") -> int:
    """Append ``data`` after the committed length; return the attempts it took.

    Raises:
        OptimisticConflict: no attempt out of ``MAX_ATTEMPTS`` went through.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if _try_append(fd, data, writer, header):
            return attempt
        time.sleep(random.uniform(0, SETTLE_S * min(attempt, 20)))
    raise OptimisticConflict(f"gave up after {MAX_ATTEMPTS} conflicting attempts")


def _try_append(fd: int, data: bytes, writer: str, header: bytes) -> bool:
    before = _wait_for_header(fd)
    # Data lands before it is acknowledged, so the file's size is never behind what was
    # acknowledged, even when a stalled writer wrote back a stale header.
    start = max(before.committed_bytes, os.fstat(fd).st_size)
    if start == HEADER_BYTES:
        data = header + data
    claim = Header(before.version + 1, start + len(data), writer)
    write_all(fd, claim.encode(), 0)
    time.sleep(SETTLE_S)
    if read_header(fd) != claim or os.fstat(fd).st_size > start:
        return False  # another claim won, or ours was stale: someone wrote past our start
    write_all(fd, data, start)
    after = read_header(fd)
    # A later version built on our claim is fine; the same version by another is a collision.
    if after.version < claim.version or (after.version == claim.version and after != claim):
        return False
    return os.pread(fd, len(data), start) == data


def _wait_for_header(fd: int) -> Header:
    """The header, waiting out a creator that has not written it yet."""
    for _ in range(1000):
        try:
            return read_header(fd)
        except ValueError:
            if os.fstat(fd).st_size >= HEADER_BYTES:
                raise
            time.sleep(0.001)
    return read_header(fd)
