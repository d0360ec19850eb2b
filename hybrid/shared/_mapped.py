"""Small shared files mapped once per process, with a lock that spans processes and threads."""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import _segment


@dataclass(eq=False)
class Mapped:
    """One process's mapping of a shared file."""

    name: str
    fd: int
    mm: mmap.mmap
    thread_lock: threading.Lock = field(default_factory=threading.Lock)
    slot: int = -1  # a Counter's slot claimed by this process

    def acquire(self) -> None:
        self.thread_lock.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.thread_lock.release()
            raise

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.thread_lock.release()

    @contextmanager
    def locked(self) -> Iterator[mmap.mmap]:
        """Hold the file's lock: other threads wait on the thread lock, other processes on flock."""
        with self.thread_lock:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                yield self.mm
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


_mapped: dict[str, Mapped] = {}
_registry_lock = threading.Lock()
fork_generation = 0  # bumped in a forked child: objects compare it instead of calling getpid


def _forget_inherited() -> None:
    """In a forked child: the inherited descriptors share flock state with the parent."""
    global fork_generation, _registry_lock
    fork_generation += 1
    _registry_lock = threading.Lock()  # a parent thread may have held it at fork time
    for inherited in _mapped.values():
        os.close(inherited.fd)
    _mapped.clear()


os.register_at_fork(after_in_child=_forget_inherited)


def create(name: str, initial: bytes) -> None:
    """Create shared file ``name`` holding ``initial``."""
    _segment.write_new(name, memoryview(initial))


def attach(name: str) -> Mapped:
    """This process's mapping of ``name``, made on first use (and again after a fork)."""
    with _registry_lock:
        mapped = _mapped.get(name)
        if mapped is None:
            fd = os.open(_segment.path_of(name), os.O_RDWR | os.O_CLOEXEC)
            size = os.fstat(fd).st_size
            mapped = _mapped[name] = Mapped(name, fd, mmap.mmap(fd, size))
        return mapped


def forget(name: str) -> None:
    """Drop this process's mapping of ``name`` (its memory goes when nothing uses it)."""
    with _registry_lock:
        mapped = _mapped.pop(name, None)
    if mapped is not None:
        os.close(mapped.fd)
