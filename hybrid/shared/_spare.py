"""Spare segments: a bounded per-process pool, so a large call reuses memory already in place.

Writing 100 MB into a fresh segment costs its page allocations as much as the copy
itself; writing into a segment that held the previous call's data, through a mapping
the parent keeps, costs the copy alone. After a call that ended normally, its argument
segments and the result segments the parent copied out come back here; segments whose
memory a caller may still map (``memoryview`` and NumPy values) never do.

An idle spare is named ``hybrid-shm-<pid>-spare-...``; taken, it is renamed after the
call that uses it, so a segment in use is never mistaken for a spare (the mappings
survive renames). At most ``MAX_SPARE_BYTES`` are
kept, none longer than ``MAX_IDLE_S`` past their last use (a timer expires them, and
each use checks too), and all are unlinked when this process exits or
:func:`trim_spares` is called.
"""

from __future__ import annotations

import atexit
import mmap
import os
import threading
import time
from dataclasses import dataclass, field

from . import _segment

MAX_SPARE_BYTES = 256 << 20  # idle memory kept for reuse, per process
MAX_SPARE_SEGMENTS = 8
MAX_IDLE_S = 30.0  # a spare unused this long is unlinked at the next use of the pool
COPY_SLICE_BYTES = 4 << 20  # about half a millisecond of memcpy with the GIL held
SPARE_PART = "spare"  # the name part that marks a spare (see leftover_segments)


@dataclass(eq=False)
class Spare:
    """A segment this process owns and keeps mapped read-write."""

    name: str
    capacity_bytes: int
    mapping: mmap.mmap
    idle_since: float = field(default=0.0)
    fresh: bool = False  # no page of it is in memory yet

    def write(self, data: memoryview) -> None:
        """Copy ``data`` to the start of the segment (it must fit).

        A fresh segment is written with write(2), which allocates its pages faster than
        faulting them through the mapping; a reused one through the mapping, in slices,
        because that copy holds the GIL: another thread waits for one slice at most.
        """
        flat = data.cast("B") if data.ndim != 1 or data.format != "B" else data
        if self.fresh:
            self.fresh = False
            if _segment.write_existing(self.name, flat):
                return
        mapping = self.mapping
        for start in range(0, flat.nbytes, COPY_SLICE_BYTES):
            end = min(start + COPY_SLICE_BYTES, flat.nbytes)
            mapping[start:end] = flat[start:end]

    def discard(self) -> None:
        """Unlink the segment; mappings made elsewhere stay valid."""
        self.mapping.close()
        _segment.unlink(self.name)


class SparePool:
    """Idle segments of this process, best fit first. Safe to use from several threads."""

    def __init__(self, idle_s: float = MAX_IDLE_S) -> None:
        self.idle_s = idle_s
        self._idle: list[Spare] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._timer: threading.Timer | None = None

    def take(self, size_bytes: int, name: str) -> Spare:
        """The smallest idle segment holding ``size_bytes``, or a new one; named ``name``."""
        with self._lock:
            self._expire()
            fitting = [spare for spare in self._idle if spare.capacity_bytes >= size_bytes]
            best = min(fitting, key=lambda spare: spare.capacity_bytes) if fitting else None
            if best is not None:
                self._idle.remove(best)
        if best is not None and _rename(best, name):
            return best
        return create(name, size_bytes)

    def take_largest(self, name: str) -> Spare | None:
        """The largest idle segment, named ``name`` (offered to a worker for its result)."""
        with self._lock:
            self._expire()
            if not self._idle:
                return None
            largest = max(self._idle, key=lambda spare: spare.capacity_bytes)
            self._idle.remove(largest)
        return largest if _rename(largest, name) else None

    def give_back(self, spare: Spare) -> None:
        """Keep ``spare`` for reuse, unlinking the oldest beyond the bounds."""
        if os.getpid() != self._pid:
            return  # a forked child's copy of the pool: the segments are the parent's
        if not _rename(spare, _segment.new_name(None, SPARE_PART)):
            return
        evicted: list[Spare] = []
        with self._lock:
            spare.idle_since = time.monotonic()
            self._idle.append(spare)
            while len(self._idle) > MAX_SPARE_SEGMENTS or self.idle_bytes() > MAX_SPARE_BYTES:
                evicted.append(self._idle.pop(0))
            self._arm_timer(self.idle_s)
        for old in evicted:
            old.discard()

    def adopt(self, name: str) -> None:
        """Make a segment this process owns (a worker wrote it) a spare."""
        try:
            spare = attach(name)
        except OSError:
            _segment.unlink(name)
            return
        self.give_back(spare)

    def idle_bytes(self) -> int:
        return sum(spare.capacity_bytes for spare in self._idle)

    def trim(self) -> int:
        """Unlink every idle segment; return how many."""
        with self._lock:
            idle, self._idle = self._idle, []
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if os.getpid() == self._pid:
            for spare in idle:
                spare.discard()
        return len(idle)

    def _arm_timer(self, delay_s: float) -> None:
        """Expire idle spares in ``delay_s`` unless a timer is set already (lock held).

        Memory kept for a next large call that never comes is given back on time, not
        at the next large call; the timer thread is a daemon and costs nothing while
        there is no spare.
        """
        if self._timer is None:
            self._timer = threading.Timer(max(delay_s, 0.0), self._on_timer)
            self._timer.daemon = True
            self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._expire()
            if self._idle:
                oldest = min(spare.idle_since for spare in self._idle)
                self._arm_timer(oldest + self.idle_s - time.monotonic())

    def _expire(self) -> None:
        oldest_kept = time.monotonic() - self.idle_s
        for spare in [spare for spare in self._idle if spare.idle_since < oldest_kept]:
            self._idle.remove(spare)
            spare.discard()


def _rename(spare: Spare, name: str) -> bool:
    """Give ``spare`` a new name; False (and it is let go) if its file is gone."""
    try:
        os.rename(_segment.path_of(spare.name), _segment.path_of(name))
    except OSError:
        spare.discard()
        return False
    spare.name = name
    return True


def create(name: str, size_bytes: int) -> Spare:
    """A new segment of ``size_bytes`` (at least 1), mapped read-write."""
    fd = os.open(_segment.path_of(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, max(1, size_bytes))
        mapping = mmap.mmap(fd, max(1, size_bytes))
    except BaseException:
        _segment.unlink(name)
        raise
    finally:
        os.close(fd)
    return Spare(name, max(1, size_bytes), mapping, fresh=True)


def attach(name: str) -> Spare:
    """Map an existing segment of this process read-write."""
    fd = os.open(_segment.path_of(name), os.O_RDWR)
    try:
        size_bytes = os.fstat(fd).st_size
        mapping = mmap.mmap(fd, size_bytes)
    finally:
        os.close(fd)
    return Spare(name, size_bytes, mapping)


_pool = SparePool()


def pool() -> SparePool:
    """This process's pool (a forked child gets a fresh, empty one)."""
    global _pool
    if _pool._pid != os.getpid():
        _pool = SparePool()
    return _pool


def trim_spares() -> int:
    """Free the memory kept for the next large call now; return how many segments that was.

    That is the idle spare segments and the buffer a large ``bytes`` last landed in.
    They are freed anyway when the process exits; a spare unused for ``MAX_IDLE_S``
    goes at the next large call, the buffer after ``KEPT_IDLE_S``.
    """
    from . import _landing

    _landing.let_go()
    return pool().trim()


atexit.register(lambda: pool().trim())
