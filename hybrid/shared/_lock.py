"""A lock named across processes, with a timeout, that a dying holder cannot leave locked.

It is an ``fcntl.flock`` on a file: the kernel drops the lock when the holder's last
descriptor closes, including when the holder is killed, so the others never deadlock.
flock does not hold on some network file systems (old NFS); keep lock files on local disk
or in ``/dev/shm`` (the default).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import re
import stat
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .._errors import LockTimeout
from . import _segment

_FIRST_WAIT_S = 0.0001  # polling starts fast: most waits are short
_MAX_WAIT_S = 0.01  # and backs off to this, so a 1 ms critical section does not burn CPU
_VALID_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class NamedLock:
    """A mutual-exclusion lock shared by every process (and thread) that uses the same name.

    Picklable: send it to workers as an argument or through the engine's ``initargs``; it
    works with the fork, forkserver and spawn start methods. Not reentrant.

    Args:
        name: letters, digits, ``_``, ``.`` and ``-``.
        directory: where the lock file lives; ``/dev/shm`` by default. Lock files are
            never removed (removing one would let two holders lock different files).

    Example:
        >>> lock = NamedLock("docs-example")
        >>> with lock.hold(timeout_s=5):
        ...     pass
    """

    def __init__(self, name: str, directory: str | os.PathLike[str] | None = None) -> None:
        if not _VALID_NAME.match(name):
            raise ValueError(f"lock names use letters, digits, '_', '.', '-': {name!r}")
        self.name = name
        self.path = Path(directory or _segment.shm_dir()) / f"hybrid-lock-{name}"
        self._pid = -1
        self._fd = -1
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<NamedLock {self.name!r} at {self.path}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return NamedLock, (self.name, self.path.parent)

    def acquire(self, timeout_s: float | None = None) -> bool:
        """Wait up to ``timeout_s`` (forever if None) for the lock; True if acquired."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        fd = self._descriptor()
        if not self._thread_lock.acquire(timeout=-1 if timeout_s is None else max(timeout_s, 0)):
            return False
        try:
            if _wait_for_flock(fd, deadline):
                return True
        except BaseException:
            self._thread_lock.release()
            raise
        self._thread_lock.release()
        return False

    def release(self) -> None:
        """Release the lock held by this process."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def locked(self) -> bool:
        """True if anyone (this process included) holds the lock right now (a snapshot)."""
        if self.acquire(timeout_s=0):
            self.release()
            return False
        return True

    def hold(self, timeout_s: float | None = None) -> _Held:
        """A context manager that acquires or raises :class:`LockTimeout`."""
        return _Held(self, timeout_s)

    async def acquire_async(self, timeout_s: float | None = None) -> bool:
        """Like :meth:`acquire` without blocking the event loop (polls with backoff)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        wait_s = _FIRST_WAIT_S
        while not self.acquire(timeout_s=0):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, _MAX_WAIT_S)
        return True

    def _descriptor(self) -> int:
        # A forked child must not share the parent's open file (flock is per open file)
        # nor inherit a thread lock that a parent thread held at fork time.
        if self._pid != os.getpid():
            self._thread_lock = threading.Lock()
            self._fd = open_lock_file(self.path)
            self._pid = os.getpid()
        return self._fd


def open_lock_file(path: str | os.PathLike[str]) -> int:
    """Open (creating it 0600 if missing) a lock file that is ours and nothing else.

    Lock files live in a directory everyone can write (``/dev/shm``): a name another user
    planted first, or a symlink at it pointing at one of our files, must not be opened.
    Creation is exclusive (``O_EXCL``), no open follows a symlink (``O_NOFOLLOW``), and an
    existing file is used only if it is a regular file this user owns.

    Raises:
        PermissionError: the name is taken by a symlink, something not a regular file, or
            a file of another user.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionError(f"lock file {path} is a symlink: refused") from exc
        raise
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
        os.close(fd)
        raise PermissionError(
            f"lock file {path} is not a regular file of this user (uid {status.st_uid}): refused"
        )
    return fd


def _wait_for_flock(fd: int, deadline: float | None) -> bool:
    """Poll a non-blocking flock with backoff until it succeeds or the deadline passes."""
    wait_s = _FIRST_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return True
        if deadline is not None:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return False
            wait_s = min(wait_s, left_s)
        time.sleep(wait_s)
        wait_s = min(wait_s * 2, _MAX_WAIT_S)


class _Held:
    def __init__(self, lock: NamedLock, timeout_s: float | None) -> None:
        self._lock = lock
        self._timeout_s = timeout_s

    def __enter__(self) -> NamedLock:
        if not self._lock.acquire(self._timeout_s):
            raise LockTimeout(f"{self._lock!r} not acquired within {self._timeout_s} s")
        return self._lock

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()
