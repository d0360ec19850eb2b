"""SQLite store over aiosqlite: WAL mode, one batching writer task, readers that never block it.

:class:`SqliteStore` implements :class:`examples.crawler.storage.Store`. One writer connection is
driven by one task that gathers every pending :meth:`SqliteStore.write` call into one
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), running each distinct statement once
with ``executemany`` over the rows of all calls, in first-appearance order. Readers use a
separate connection; in WAL mode they see the last commit and never wait for the writer.
The schema is versioned with ``PRAGMA user_version``: migration ``i`` (0-based) brings the
database to version ``i + 1``.

Durability: ``synchronous=NORMAL`` in WAL mode survives a killed process (``kill -9``);
only a power loss can drop the last commits.
"""

from __future__ import annotations

from . import _identity  # noqa: F401  (first: one clear line if `adapters` is not ours)

# isort: split

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import aiosqlite
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "adapters.sqlite needs aiosqlite: pip install 'hybrid-engine[sqlite]'"
    ) from exc

from hybrid import HybridError

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Write:
    """One statement and the parameter rows it runs with (one execution per row)."""

    sql: str
    rows: Sequence[Row]


BATCH_MAX_CALLS = 512  # write() calls merged into one transaction at most
BATCH_LINGER_S = 0.005  # wait this long for more calls before committing a batch


class SchemaTooNew(HybridError, RuntimeError):
    """The database was written by a newer program (its user_version is higher)."""


class StoreFailed(HybridError, RuntimeError):
    """The writer task stopped: nothing more can be written (the message says why)."""


_Pending = tuple[Sequence[Write], "asyncio.Future[None]"]


class SqliteStore:
    """An async SQLite store; build it with :meth:`open`.

    Args:
        writer: the connection the writer task owns.
        reader: the connection :meth:`read` uses.
        linger_s: seconds the writer waits for more calls before committing a batch.
    """

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        linger_s: float = BATCH_LINGER_S,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._linger_s = linger_s
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(
            self._write_forever(), name="sqlite-writer"
        )
        self._task.add_done_callback(self._writer_stopped)
        self.commits = 0
        self.closed = False
        self.failure: StoreFailed | None = None

    @classmethod
    async def open(
        cls, path: str | Path, migrations: Sequence[str] = (), *, linger_s: float = BATCH_LINGER_S
    ) -> SqliteStore:
        """Open (or create) the database at ``path`` and bring its schema up to date.

        Args:
            path: the database file.
            migrations: SQL scripts; script ``i`` upgrades version ``i`` to ``i + 1``.
            linger_s: seconds the writer waits for more calls before committing.

        Raises:
            OSError: the file cannot be created or opened for writing.
            SchemaTooNew: the database is at a higher version than ``migrations`` reach.
        """
        writer = await _connect(path)
        try:
            await _migrate(writer, migrations)
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, linger_s=linger_s)

    def submit(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        """Queue ``writes`` for the next transaction; the future resolves on commit.

        The future fails with the call's own error (the other calls still commit), or
        with :class:`StoreFailed` once the writer has stopped: it never waits forever.
        """
        if self.closed:
            raise RuntimeError("the store is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failure is not None:
            future.set_exception(self.failure)
            return future
        self._queue.put_nowait((writes, future))
        return future

    async def write(self, writes: Sequence[Write]) -> None:
        """Commit ``writes`` together (possibly with other calls); return once durable."""
        await asyncio.shield(self.submit(writes))

    async def read(self, sql: str, params: Row = ()) -> list[Row]:
        """Run a query on the reader connection and return every row."""
        async with self._reader.execute(sql, params) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

    async def flush(self) -> None:
        """Wait until every write submitted so far has committed."""
        await self.write(())

    async def close(self) -> None:
        """Commit what is pending, stop the writer and close both connections."""
        if self.closed:
            return
        self.closed = True
        self._queue.put_nowait(None)
        # Waits without raising: a writer that died said why, through `failure`.
        await asyncio.wait([self._task])
        await self._reader.close()
        await self._writer.close()

    async def _write_forever(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            if self._linger_s and self._queue.empty():
                await asyncio.sleep(self._linger_s)
            stop = self._take_more(batch)
            await self._commit(batch)
            if stop:
                return

    def _writer_stopped(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            cause = "cancelled"
        elif (error := task.exception()) is not None:
            cause = f"{type(error).__name__}: {error}"
        else:
            return  # closed normally
        self.failure = StoreFailed(f"the SQLite writer stopped ({cause})")
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                _settle([item], self.failure)

    def _take_more(self, batch: list[_Pending]) -> bool:
        while len(batch) < BATCH_MAX_CALLS and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                return True
            batch.append(item)
        return False

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            await self._run_transaction([writes for writes, _ in batch])
        except Exception as exc:
            # Any error of one call (sqlite3.Error, or UnicodeEncodeError for a lone
            # surrogate, OverflowError for a huge int...) fails that call, not the writer.
            if len(batch) == 1:
                _settle(batch, exc)
                return
            # One bad call must not fail its neighbours: commit each call alone.
            for item in batch:
                await self._commit([item])
            return
        except BaseException as exc:
            _settle(batch, exc)
            raise
        self.commits += 1
        _settle(batch, None)

    async def _run_transaction(self, calls: Sequence[Sequence[Write]]) -> None:
        grouped: dict[str, list[Row]] = {}
        for writes in calls:
            for write in writes:
                grouped.setdefault(write.sql, []).extend(write.rows)
        if not grouped:
            return
        await self._writer.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in grouped.items():
                await self._writer.executemany(sql, rows)
            await self._writer.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await self._writer.execute("ROLLBACK")
            raise


def _settle(batch: list[_Pending], error: BaseException | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


async def _connect(path: str | Path) -> aiosqlite.Connection:
    connection = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=NORMAL")
        await connection.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        await connection.close()
        raise
    return connection


async def _migrate(connection: aiosqlite.Connection, migrations: Sequence[str]) -> None:
    async with connection.execute("PRAGMA user_version") as cursor:
        row: Any = await cursor.fetchone()
    version = int(row[0])
    if version > len(migrations):
        raise SchemaTooNew(
            f"database schema version {version} is newer than this program's {len(migrations)}"
        )
    for number, script in enumerate(migrations[version:], start=version + 1):
        await connection.executescript(
            f"BEGIN IMMEDIATE;\n{script};\nPRAGMA user_version={number};\nCOMMIT;"
        )
