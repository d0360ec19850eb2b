"""Shared-memory segments as plain files in ``/dev/shm``, owned by the process that made them.

``multiprocessing.shared_memory`` registers every segment a process opens with
Python's resource tracker, which (3.11) unlinks or warns about segments that a worker
merely attached to. Plain files in the tmpfs avoid that: nothing is tracked, the owner
unlinks, and a mapping stays valid after the unlink until the mapper lets it go.

Every name starts with ``hybrid-shm-<owner pid>-`` so an owner's leftovers can be listed,
and segments of owners that died can be swept.
"""

from __future__ import annotations

import mmap
import os
import re
import secrets
import tempfile
from pathlib import Path

PREFIX = "hybrid-shm-"  # distinct from the engine's own result areas ("hybrid-<pid>-...")
TOMBSTONE = "-gone"  # the name ending of a call's tombstone (see _lease)
SPARE = "-spare-"  # the name part of a spare kept for reuse (see _spare)
_NAME = re.compile(r"^hybrid-shm-(\d+)-[0-9a-z]+(?:-[0-9a-z]+)*$")


def shm_dir() -> Path:
    """Where segments live: ``/dev/shm`` (memory) where it exists, else the temp directory."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() else Path(tempfile.gettempdir())


def new_name(owner_pid: int | None = None, *parts: str) -> str:
    """A fresh segment name owned by ``owner_pid`` (this process by default)."""
    pid = os.getpid() if owner_pid is None else owner_pid
    return "-".join((f"{PREFIX}{pid}", *parts, secrets.token_hex(8)))


def path_of(name: str) -> Path:
    if not _NAME.match(name):
        raise ValueError(f"not a hybrid segment name: {name!r}")
    return shm_dir() / name


def write_new(name: str, data: memoryview) -> None:
    """Create segment ``name`` holding ``data``; fails if it exists."""
    fd = os.open(path_of(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = data.cast("B") if data.ndim != 1 or data.format != "B" else data
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])
    except BaseException:
        os.close(fd)
        unlink(name)
        raise
    os.close(fd)


def write_existing(name: str, data: memoryview) -> bool:
    """Overwrite the start of segment ``name`` with ``data``; False if it is gone."""
    try:
        fd = os.open(path_of(name), os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        view = data.cast("B") if data.ndim != 1 or data.format != "B" else data
        written = 0
        while written < len(view):
            written += os.pwrite(fd, view[written:], written)
    finally:
        os.close(fd)
    return True


def read_bytes(name: str, size_bytes: int) -> bytes:
    """Copy a segment's contents into a new ``bytes``."""
    with open(path_of(name), "rb", buffering=0) as file:
        data = file.read(size_bytes)
    if len(data) != size_bytes:
        raise ValueError(f"segment {name} holds {len(data)} bytes, expected {size_bytes}")
    return data


def map_readonly(name: str) -> memoryview:
    """Map a segment read-only; the view stays valid after the owner unlinks it."""
    with open(path_of(name), "rb", buffering=0) as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return memoryview(b"")
        mapping = mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ)
    return memoryview(mapping)


def unlink(name: str) -> bool:
    """Remove a segment; False if it was already gone."""
    try:
        os.unlink(path_of(name))
    except FileNotFoundError:
        return False
    return True


def leftover_segments(
    owner_pid: int | None = None, *, tombstones: bool = False, spares: bool = False
) -> list[str]:
    """Names of segments owned by ``owner_pid`` (this process by default) that still exist.

    Tests assert this is empty after a call, whatever way the call ended.

    Args:
        owner_pid: whose segments; this process by default.
        tombstones: also list the empty marker files of calls that ended abnormally
            (they hold no memory and go a minute later, or when their owner exits).
        spares: also list the idle segments kept for reuse by later large calls
            (bounded; see :func:`trim_spares`).
    """
    pid = os.getpid() if owner_pid is None else owner_pid
    start = f"{PREFIX}{pid}-"
    return sorted(
        entry.name
        for entry in shm_dir().iterdir()
        if entry.name.startswith(start)
        and (tombstones or not entry.name.endswith(TOMBSTONE))
        and (spares or SPARE not in entry.name)
    )


def remove_orphaned_segments() -> list[str]:
    """Unlink segments whose owner process no longer exists; return their names.

    A parent killed with SIGKILL cannot clean up; the first engine a process starts calls
    this (off the loop) to reclaim such memory. Only this user's segments are removed, and
    a pid reused by a live process keeps its name's segments (they are left, not lost).
    """
    removed: list[str] = []
    own_uid = os.geteuid()
    for entry in shm_dir().iterdir():
        match = _NAME.match(entry.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        try:
            # Only this user's: another user's segments are theirs to reclaim.
            if entry.stat(follow_symlinks=False).st_uid != own_uid:
                continue
            if unlink(entry.name):
                removed.append(entry.name)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def remove_prefixed(prefix: str) -> int:
    """Unlink every segment whose name starts with ``prefix``; return how many."""
    count = 0
    for entry in shm_dir().iterdir():
        if entry.name.startswith(prefix) and unlink(entry.name):
            count += 1
    return count


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False  # 0 and -1 would address process groups, not a process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
