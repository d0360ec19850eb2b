"""The result area a worker shares with its parent: a small file-backed memory map.

A worker runs a batch of tasks one after another and appends each task's result
record here the moment it finishes. The map outlives the worker, so when a worker
dies mid-batch the parent still knows exactly which tasks finished (their records),
which one was running (``progress``) and which never started. That is what keeps
batching exact: no finished task is lost or run twice, no other task is blamed.

Two halves alternate between consecutive batches, so a worker can start its next
batch while the parent is still reading the previous one. The parent writes the
skip flags (a task cancelled before it started); the worker writes everything else.
A heartbeat block at the start carries the worker's liveness stamps.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

MAX_BATCH = 4096  # calls in one batch: one skip flag each
HALF_DATA_BYTES = 1 << 20  # result records one half holds; a batch stops early when it is full

_HEARTBEAT = struct.Struct("<QQQ")  # beat count, wall clock ns, monotonic ns
_BEAT_INTERVAL = struct.Struct("<Q")  # the interval the parent wants beats at, in ns
_BEAT_INTERVAL_OFFSET = _HEARTBEAT.size
_HEARTBEAT_BYTES = 64
_HALF_HEADER = struct.Struct("<IIi")  # records, bytes used, call running
_COUNTS = struct.Struct("<II")  # the header's first two fields: records, bytes used
_RUNNING = struct.Struct("<i")  # the header's third field
_RUNNING_OFFSET = 8
_RECORD_LEN = struct.Struct("<I")
_HALF_BYTES = _HALF_HEADER.size + MAX_BATCH + HALF_DATA_BYTES
AREA_BYTES = _HEARTBEAT_BYTES + 2 * _HALF_BYTES

NOT_STARTED = -1


def _half_offset(parity: int) -> int:
    return _HEARTBEAT_BYTES + parity * _HALF_BYTES


class ResultArea:
    """A view of one worker's result area, usable from either side."""

    def __init__(self, path: str, *, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, AREA_BYTES)
            self._map = mmap.mmap(fd, AREA_BYTES)
        finally:
            os.close(fd)
        self.path = path

    @classmethod
    def create(cls) -> ResultArea:
        """Make a fresh area in shared memory (``/dev/shm`` where it exists)."""
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        return cls(os.path.join(folder, f"hybrid-{os.getpid()}-{uuid.uuid4().hex}"), create=True)

    def unlink(self) -> None:
        """Remove the file; the mappings already made stay valid."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def close(self) -> None:
        self._map.close()

    # Both sides

    def reset(self, parity: int) -> None:
        """Clear a half for a new batch: no records, nothing running, no skip flags."""
        offset = _half_offset(parity)
        _HALF_HEADER.pack_into(self._map, offset, 0, 0, NOT_STARTED)
        start = offset + _HALF_HEADER.size
        self._map[start : start + MAX_BATCH] = bytes(MAX_BATCH)

    def progress(self, parity: int) -> tuple[int, int]:
        """Return (records written, index of the task last started)."""
        records, _, running = _HALF_HEADER.unpack_from(self._map, _half_offset(parity))
        return records, running

    # Worker side

    def writer(self, parity: int) -> HalfWriter:
        """A fast appender for one batch in a half the parent has just reset."""
        return HalfWriter(self._map, _half_offset(parity))

    def beat(self, count: int, wall_ns: int, monotonic_ns: int) -> None:
        _HEARTBEAT.pack_into(self._map, 0, count, wall_ns, monotonic_ns)

    # Parent side

    def skip(self, parity: int, index: int) -> None:
        self._map[_half_offset(parity) + _HALF_HEADER.size + index] = 1

    def records(self, parity: int) -> Iterator[bytes]:
        """Yield the records of a half in task order."""
        offset = _half_offset(parity)
        count, _, _ = _HALF_HEADER.unpack_from(self._map, offset)
        position = offset + _HALF_HEADER.size + MAX_BATCH
        for _ in range(count):
            (length,) = _RECORD_LEN.unpack_from(self._map, position)
            position += _RECORD_LEN.size
            yield self._map[position : position + length]
            position += length

    def beat_interval_ns(self) -> int:
        """The interval the parent asked for (0: not said yet)."""
        (interval_ns,) = _BEAT_INTERVAL.unpack_from(self._map, _BEAT_INTERVAL_OFFSET)
        return int(interval_ns)

    def ask_beat_interval(self, interval_s: float) -> None:
        _BEAT_INTERVAL.pack_into(self._map, _BEAT_INTERVAL_OFFSET, int(interval_s * 1e9))

    def last_beat(self) -> tuple[int, int, int]:
        """Return (beat count, wall clock ns, monotonic ns) of the worker's last beat."""
        count, wall_ns, monotonic_ns = _HEARTBEAT.unpack_from(self._map, 0)
        return count, wall_ns, monotonic_ns


class HalfWriter:
    """The worker's side of one half during one batch, with its offsets worked out once.

    Per call: check its skip flag, say it started, run it, append its record. This is
    the hot loop of tiny tasks, so it does no more than that.
    """

    __slots__ = ("_data", "_flags", "_header", "_map", "records", "used")

    def __init__(self, area_map: mmap.mmap, offset: int) -> None:
        self._map = area_map
        self._header = offset
        self._flags = offset + _HALF_HEADER.size
        self._data = self._flags + MAX_BATCH
        self.records = 0
        self.used = 0

    def run_calls(
        self,
        calls: Iterable[tuple[Any, ...]],
        index: int,
        run: Callable[[tuple[Any, ...]], Any],
        encode: Callable[[Any], tuple[Any, bytes]],
        outcomes: list[Any],
    ) -> tuple[int, bool]:
        """Run calls numbered from ``index``, recording each outcome as it finishes.

        A call whose skip flag is set is not run (its outcome is None). Returns the next
        index and whether the half filled up (then the calls after it never started).
        """
        area_map = self._map
        flags = self._flags
        running_at = self._header + _RUNNING_OFFSET
        pack_running = _RUNNING.pack_into
        pack_counts = _COUNTS.pack_into
        pack_length = _RECORD_LEN.pack_into
        length_bytes = _RECORD_LEN.size
        header = self._header
        data = self._data
        records, used = self.records, self.used
        for args in calls:
            if area_map[flags + index]:
                outcome, record = encode(None)
            else:
                pack_running(area_map, running_at, index)
                outcome, record = encode(run(args))
            outcomes.append(outcome)
            length = len(record)
            end = used + length_bytes + length
            if end > HALF_DATA_BYTES:
                self.records, self.used = records, used
                return index, True
            at = data + used
            pack_length(area_map, at, length)
            area_map[at + length_bytes : at + length_bytes + length] = record
            records += 1
            used = end
            # The count is written last: a record is visible only once it is whole.
            pack_counts(area_map, header, records, used)
            index += 1
        self.records, self.used = records, used
        return index, False
