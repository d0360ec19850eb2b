"""An append-only JSON Lines or CSV file that the parent and many workers write at once."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from . import _appending
from ._closing import ClosesOnExit
from ._records import Format, csv_header, encode_lines

Locking = Literal["flock", "optimistic"]
FsyncSchedule = Literal["never", "batch"] | float


class Sink(ClosesOnExit):
    """Appends whole records to one file from any number of processes at once.

    Each :meth:`write_many` call is one batch: its lines land together, never interleaved
    with another writer's, and when it returns the records are written (and synced, if
    the schedule says so). A writer killed mid-batch may leave the first whole lines of
    that batch (never acknowledged to it) and at most one torn line, which the next
    writer cuts off and :func:`read_records` skips.

    Picklable: pass it to tasks as an argument or through the engine's ``initargs``;
    each process opens the file for itself.

    Args:
        path: the file; created if missing.
        format: ``"jsonl"`` (one JSON value per line) or ``"csv"``.
        fields: CSV column names (written as the header of a new file); needed for dict
            records.
        locking: ``"flock"`` (an exclusive lock per batch; right for local disks) or
            ``"optimistic"`` (a versioned header checked before and after each batch
            and retried on conflict, for file systems where flock does not hold). A file
            is written in one mode only: optimistic files start with the header.
        fsync: ``"never"`` (the OS decides), ``"batch"`` (after every batch) or a number
            of seconds (after the first batch once that long has passed since the last
            sync, and at :meth:`close`).
        mode: the permissions a new file is created with (less the umask): by default
            0o600, only this user; 0o644 to let others read it. A symlink at ``path``
            is refused (``O_NOFOLLOW``).

    Example:
        >>> import tempfile, os
        >>> from hybrid.shared import read_records
        >>> path = os.path.join(tempfile.mkdtemp(), "events.jsonl")
        >>> with Sink(path) as sink:
        ...     sink.write({"page": 1})
        >>> list(read_records(path))
        [{'page': 1}]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: Format = "jsonl",
        fields: Sequence[str] | None = None,
        locking: Locking = "flock",
        fsync: FsyncSchedule = "never",
        mode: int = 0o600,
    ) -> None:
        if format not in ("jsonl", "csv"):
            raise ValueError(f"format must be 'jsonl' or 'csv', not {format!r}")
        if locking not in ("flock", "optimistic"):
            raise ValueError(f"locking must be 'flock' or 'optimistic', not {locking!r}")
        if not (fsync in ("never", "batch") or (isinstance(fsync, int | float) and fsync > 0)):
            raise ValueError(f"fsync must be 'never', 'batch' or seconds > 0, not {fsync!r}")
        self.path = Path(path)
        self.format: Format = format
        self.fields = tuple(fields) if fields is not None else None
        self.locking: Locking = locking
        self.fsync: FsyncSchedule = fsync
        self.mode = mode
        self._header = csv_header(self.fields) if format == "csv" and self.fields else b""
        self._fd = -1
        self._pid = -1
        self._writer = ""
        self._synced_at = time.monotonic()

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (
            str(self.path), self.format, self.fields, self.locking, self.fsync, self.mode,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<Sink {self.format} {self.path} locking={self.locking} fsync={self.fsync}>"

    def write(self, record: Any) -> None:
        """Append one record (a batch of one)."""
        self.write_many((record,))

    def write_many(self, records: Iterable[Any]) -> int:
        """Append records as one batch; return how many.

        Raises:
            ValueError, TypeError: a record cannot be encoded (nothing is written).
            OptimisticConflict: with ``locking="optimistic"``, other writers kept winning.
        """
        batch = list(records)
        if not batch:
            return 0
        data = encode_lines(batch, self.format, self.fields)
        fd = self._descriptor()
        if self.locking == "flock":
            _appending.append_locked(fd, data, self._header)
        else:
            _appending.append_optimistic(fd, data, self._writer, self._header)
        self._sync_if_due(fd)
        return len(batch)

    def close(self) -> None:
        """Sync (unless the schedule is ``"never"``) and close this process's descriptor."""
        if self._fd >= 0 and self._pid == os.getpid():
            if self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
        self._fd = -1

    def _descriptor(self) -> int:
        # A forked child gets its own descriptor (and writer id) rather than the parent's.
        if self._pid != os.getpid():
            if self.locking == "optimistic":
                _appending.ensure_header(str(self.path), self.mode)
                flags = os.O_RDWR
            else:
                flags = os.O_RDWR | os.O_APPEND | os.O_CREAT
            self._fd = os.open(self.path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, self.mode)
            self._pid = os.getpid()
            self._writer = secrets.token_hex(8)
        return self._fd

    def _sync_if_due(self, fd: int) -> None:
        if self.fsync == "never":
            return
        now = time.monotonic()
        if self.fsync == "batch" or now - self._synced_at >= self.fsync:
            os.fsync(fd)
            self._synced_at = now


def _rebuild(
    path: str,
    format: Format,
    fields: tuple[str, ...] | None,
    locking: Locking,
    fsync: FsyncSchedule,
    mode: int = 0o600,
) -> Sink:
    return Sink(path, format=format, fields=fields, locking=locking, fsync=fsync, mode=mode)
