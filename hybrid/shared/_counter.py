"""A counter the parent and every worker add to at once: no lock, no lost updates.

Each process adds into a cell of its own (one per cache line) in a shared file, so an
add is a plain store that no other process writes; the value is the sum of the cells.
A cell outlives its process, so nothing counted is ever lost.
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Any

from . import _mapped, _segment
from ._closing import ClosesOnExit

_MAGIC = b"HYBCNTR1"
_CELL_BYTES = 64  # one cache line per cell: no false sharing between processes
_HEADER = struct.Struct("=8sq")  # magic, number of cells
_CELL = struct.Struct("=qq")  # owner pid, count
DEFAULT_CELLS = 256  # processes that can add without the lock; more share cell 0 under it


class Counter(ClosesOnExit):
    """An integer counter shared by the parent and all workers.

    :meth:`add` is lock-free and never loses an update, whatever the contention.
    Picklable: pass it to tasks as an argument or through the engine's ``initargs``
    (fork, forkserver and spawn alike). The creating process owns the backing file:
    :meth:`close` (or leaving the ``with`` block) removes it.

    Args:
        initial: the starting value.
        cells: processes that get a lock-free cell of their own.

    Example:
        >>> with Counter() as pages:
        ...     pages.add(3)
        ...     pages.value
        3
    """

    def __init__(self, initial: int = 0, *, cells: int = DEFAULT_CELLS) -> None:
        if cells < 2:
            raise ValueError(f"cells must be at least 2, not {cells}")
        name = _segment.new_name(None, "counter")
        data = bytearray(_CELL_BYTES * (cells + 1))
        _HEADER.pack_into(data, 0, _MAGIC, cells)
        _CELL.pack_into(data, _CELL_BYTES, -1, initial)  # cell 0: shared, under the lock
        _mapped.create(name, bytes(data))
        self.name = name
        self._owner_pid = os.getpid()
        self._cells = cells
        self._cell: Any = None
        self._cell_lock: Any = None
        self._generation = -1

    @classmethod
    def attach(cls, name: str) -> Counter:
        """Use the existing counter ``name`` (what unpickling does)."""
        counter = cls.__new__(cls)
        counter.name = name
        counter._owner_pid = -1
        counter._cell = None
        counter._cell_lock = None
        counter._generation = -1
        mapped = _mapped.attach(name)
        magic, counter._cells = _HEADER.unpack_from(mapped.mm, 0)
        if magic != _MAGIC:
            raise ValueError(f"{name} is not a hybrid counter")
        return counter

    def __reduce__(self) -> tuple[Any, ...]:
        return Counter.attach, (self.name,)

    def __repr__(self) -> str:
        return f"<Counter {self.name} value={self.value}>"

    def add(self, amount: int = 1) -> None:
        """Add ``amount`` (may be negative); lock-free, safe from any process or thread."""
        if self._generation != _mapped.fork_generation:
            self._claim()
        lock = self._cell_lock
        lock.acquire()
        try:
            self._cell.value += amount
        finally:
            lock.release()

    @property
    def value(self) -> int:
        """The current total (a snapshot: adds in flight may or may not be counted)."""
        mm = _mapped.attach(self.name).mm  # after a fork, the child's own mapping
        return sum(
            _CELL.unpack_from(mm, _CELL_BYTES * (index + 1))[1] for index in range(self._cells)
        )

    def reset(self) -> int:
        """Bring the total to zero and return what it was; concurrent adds are kept."""
        total = self.value
        self.add(-total)
        return total

    def close(self) -> None:
        """Remove the backing file if this process created it; other processes keep their view."""
        if self._owner_pid == os.getpid():
            self._owner_pid = -1
            _segment.unlink(self.name)
            _mapped.forget(self.name)

    def _claim(self) -> None:
        mapped = _mapped.attach(self.name)
        if mapped.slot < 0:
            with mapped.locked() as mm:
                mapped.slot = _claim_cell(mm, self._cells)
        offset = _CELL_BYTES * (mapped.slot + 1) + 8
        self._cell = ctypes.c_int64.from_buffer(mapped.mm, offset)
        # Only this process writes its own cell, so threads are all it must exclude;
        # the shared cell 0 also needs the file lock.
        self._cell_lock = mapped if mapped.slot == 0 else mapped.thread_lock
        self._generation = _mapped.fork_generation


def _claim_cell(mm: Any, cells: int) -> int:
    """A cell for this process (under the file lock): free, its own, or a dead process's."""
    me = os.getpid()
    for index in range(1, cells):
        owner = _CELL.unpack_from(mm, _CELL_BYTES * (index + 1))[0]
        if owner in (0, me) or not _segment.pid_alive(owner):
            # A dead owner's count stays in the cell: the new owner adds to it.
            struct.pack_into("=q", mm, _CELL_BYTES * (index + 1), me)
            return index
    return 0
