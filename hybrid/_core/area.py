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
import marshal
import math
import mmap
import os
import pickle
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
# Progress the running call reported (hybrid.report_progress): a sequence number, odd while
# the worker writes (the parent skips a torn read), then call id, done and total (NaN: None).
_PROGRESS_SEQ = struct.Struct("<I")
_PROGRESS = struct.Struct("<qdd")
_PROGRESS_SEQ_OFFSET = _BEAT_INTERVAL_OFFSET + _BEAT_INTERVAL.size
_PROGRESS_OFFSET = _PROGRESS_SEQ_OFFSET + _PROGRESS_SEQ.size
_HEARTBEAT_BYTES = 64
assert _PROGRESS_OFFSET + _PROGRESS.size <= _HEARTBEAT_BYTES
# A half: header, skip flags (parent), record kinds, numbers, and a data stream.
# The header holds the records written and whether the batch started. Each call leaves
# one record, so the call running is the one after the last record.
_HALF_HEADER = struct.Struct("<Ii")
_FLAGS_AT = _HALF_HEADER.size
_KINDS_AT = _FLAGS_AT + MAX_BATCH
_NUMBERS_AT = _KINDS_AT + MAX_BATCH  # 8-byte aligned: one int64 or float64 per call
_NUMBER_BYTES = 8
_DATA_AT = _NUMBERS_AT + MAX_BATCH * _NUMBER_BYTES
_RECORD_LEN = struct.Struct("<I")
_NUMBER = {0: struct.Struct("<q"), 1: struct.Struct("<d")}

# Record kinds. Numbers, the commonest results of tiny calls, go in their call's number
# slot (an int needs no kind write: 0 is the reset value). Plain scalars go by marshal,
# several times cheaper than pickle; marshal is exact for these types only (it would
# turn a bytearray into bytes).
VALUE_INT = 0
VALUE_FLOAT = 1
VALUE_MARSHAL = 2
VALUE_PICKLE = 3
FAILURE = 4  # a pickled outcome describing the call's error
SKIPPED = 5  # cancelled before it started: no payload
_MARSHAL_EXACT = frozenset({int, float, complex, str, bytes, bool, type(None)})
_HALF_BYTES = _DATA_AT + HALF_DATA_BYTES
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
        self.progress_seen = 0  # the parent's last progress sequence number handed on

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
        """Clear a half for a new batch: no records, not started, no skip flags or kinds."""
        offset = _half_offset(parity)
        self._map[offset : offset + _NUMBERS_AT] = bytes(_NUMBERS_AT)

    def progress(self, parity: int) -> tuple[int, int]:
        """Return (records written, index of the call running or NOT_STARTED)."""
        records, started = _HALF_HEADER.unpack_from(self._map, _half_offset(parity))
        return records, records if started else NOT_STARTED

    # Worker side

    def writer(self, parity: int) -> HalfWriter:
        """A fast appender for one batch in a half the parent has just reset."""
        return HalfWriter(self._map, _half_offset(parity))

    def report_progress(self, call_id: int, done: float, total: float | None) -> None:
        (seq,) = _PROGRESS_SEQ.unpack_from(self._map, _PROGRESS_SEQ_OFFSET)
        _PROGRESS_SEQ.pack_into(self._map, _PROGRESS_SEQ_OFFSET, (seq + 1) & 0xFFFFFFFF)
        total_value = math.nan if total is None else total
        _PROGRESS.pack_into(self._map, _PROGRESS_OFFSET, call_id, done, total_value)
        _PROGRESS_SEQ.pack_into(self._map, _PROGRESS_SEQ_OFFSET, (seq + 2) & 0xFFFFFFFF)

    def beat(self, count: int, wall_ns: int, monotonic_ns: int) -> None:
        _HEARTBEAT.pack_into(self._map, 0, count, wall_ns, monotonic_ns)

    # Parent side

    def skip(self, parity: int, index: int) -> None:
        self._map[_half_offset(parity) + _FLAGS_AT + index] = 1

    def records(self, parity: int) -> Iterator[tuple[int, Any]]:
        """Yield the (kind, number or payload bytes) records of a half in call order."""
        offset = _half_offset(parity)
        area_map = self._map
        count, _ = _HALF_HEADER.unpack_from(area_map, offset)
        position = offset + _DATA_AT
        for index in range(count):
            kind = area_map[offset + _KINDS_AT + index]
            if kind in _NUMBER:
                at = offset + _NUMBERS_AT + index * _NUMBER_BYTES
                yield kind, _NUMBER[kind].unpack_from(area_map, at)[0]
            elif kind == SKIPPED:
                yield kind, b""
            else:
                (length,) = _RECORD_LEN.unpack_from(area_map, position)
                position += _RECORD_LEN.size
                yield kind, area_map[position : position + length]
                position += length

    def beat_interval_ns(self) -> int:
        """The interval the parent asked for (0: not said yet)."""
        (interval_ns,) = _BEAT_INTERVAL.unpack_from(self._map, _BEAT_INTERVAL_OFFSET)
        return int(interval_ns)

    def ask_beat_interval(self, interval_s: float) -> None:
        _BEAT_INTERVAL.pack_into(self._map, _BEAT_INTERVAL_OFFSET, int(interval_s * 1e9))

    def progress_report(self) -> tuple[int, int, float, float | None] | None:
        """``(sequence, call id, done, total)`` last reported; None if none, or mid-write."""
        (seq,) = _PROGRESS_SEQ.unpack_from(self._map, _PROGRESS_SEQ_OFFSET)
        call_id, done, total = _PROGRESS.unpack_from(self._map, _PROGRESS_OFFSET)
        (again,) = _PROGRESS_SEQ.unpack_from(self._map, _PROGRESS_SEQ_OFFSET)
        if seq == 0 or seq & 1 or seq != again:
            return None
        return seq, call_id, done, None if math.isnan(total) else total

    def last_beat(self) -> tuple[int, int, int]:
        """Return (beat count, wall clock ns, monotonic ns) of the worker's last beat."""
        count, wall_ns, monotonic_ns = _HEARTBEAT.unpack_from(self._map, 0)
        return count, wall_ns, monotonic_ns


class HalfWriter:
    """The worker's side of one half during one batch, with its views made once.

    Per call: run it, write its record, then count it (last: a record counts only once
    it is whole). This is the hot loop of tiny tasks, so it does no more than that;
    memoryview item writes cost about half of ``struct.pack_into`` on the map.
    """

    __slots__ = (
        "_count",
        "_data_at",
        "_flags",
        "_floats",
        "_ints",
        "_kinds",
        "_map",
        "_used",
        "_views",
    )

    def __init__(self, area_map: mmap.mmap, offset: int) -> None:
        whole = memoryview(area_map)
        header = whole[offset : offset + _HALF_HEADER.size].cast("i")
        numbers = whole[offset + _NUMBERS_AT : offset + _DATA_AT]
        self._count = header
        self._flags = whole[offset + _FLAGS_AT : offset + _KINDS_AT]
        self._kinds = whole[offset + _KINDS_AT : offset + _NUMBERS_AT]
        self._ints = numbers.cast("q")
        self._floats = numbers.cast("d")
        self._views: list[memoryview[Any]] = [
            whole,
            header,
            numbers,
            self._flags,
            self._kinds,
            self._ints,
            self._floats,
        ]
        self._map = area_map
        self._data_at = offset + _DATA_AT
        self._used = 0  # bytes of the data stream written
        header[1] = 1  # started

    def close(self) -> None:
        """Let go of the map (a map with views on it cannot be closed)."""
        for view in reversed(self._views):
            view.release()

    def run_calls(
        self,
        fn: Callable[..., Any],
        calls: Iterable[tuple[Any, ...]],
        index: int,
        values: list[Any],
        problems: dict[int, Any],
        describe_error: Callable[[BaseException, str], Any],
    ) -> tuple[int, bool]:
        """Run one task's calls, numbered from ``index``, recording each as it finishes.

        Values go to ``values``; a call that failed or was skipped gets None there and
        its outcome in ``problems``. A task whose first call the parent flagged was
        cancelled: none of its calls run. Returns the next index and whether the data
        stream filled up (then the calls after it never started).
        """
        count, kinds, ints, floats = self._count, self._kinds, self._ints, self._floats
        if self._flags[index]:
            return self._skip(calls, index, values, problems), False
        for args in calls:
            try:
                value = fn(*args)
            except BaseException as exc:
                problems[index] = outcome = describe_error(exc, "")
                value, kind, record = None, FAILURE, _dumps(outcome)
            else:
                value_type = type(value)
                if value_type is int or value_type is float:
                    try:
                        if value_type is int:
                            ints[index] = value
                        else:
                            floats[index] = value
                            kinds[index] = VALUE_FLOAT
                    except ValueError:
                        pass  # an int beyond 64 bits: marshalled below
                    else:
                        values.append(value)
                        index += 1
                        count[0] = index
                        continue
                kind, record = _serialised(value, problems, index, describe_error)
                if kind == FAILURE:
                    value = None
            values.append(value)
            if not self._append(record):
                return index, True
            kinds[index] = kind
            index += 1
            count[0] = index
        return index, False

    def _append(self, record: bytes) -> bool:
        """Add a record to the data stream; False when it does not fit."""
        used = self._used
        end = used + _RECORD_LEN.size + len(record)
        if end > HALF_DATA_BYTES:
            return False
        at = self._data_at + used
        _RECORD_LEN.pack_into(self._map, at, len(record))
        self._map[at + _RECORD_LEN.size : self._data_at + end] = record
        self._used = end
        return True

    def _skip(
        self, calls: Iterable[Any], index: int, values: list[Any], problems: dict[int, Any]
    ) -> int:
        for _ in calls:
            values.append(None)
            problems[index] = None
            self._kinds[index] = SKIPPED
            index += 1
        self._count[0] = index
        return index


def _serialised(
    value: Any, problems: dict[int, Any], index: int, describe_error: Callable[..., Any]
) -> tuple[int, bytes]:
    if type(value) in _MARSHAL_EXACT:
        return VALUE_MARSHAL, marshal.dumps(value)
    try:
        return VALUE_PICKLE, _dumps(value)
    except Exception as exc:
        # A value that will not pickle becomes that call's error.
        problems[index] = outcome = describe_error(exc, type(value).__qualname__)
        return FAILURE, _dumps(outcome)


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
