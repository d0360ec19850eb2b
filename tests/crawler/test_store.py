"""The SQLite store: atomic grouped writes, batching, schema versions, readers beside the writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from adapters.sqlite import SchemaTooNew, SqliteStore, Write
from examples.crawler.storage import Store

SCHEMA = ("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",)


async def test_concurrent_writes_share_transactions_and_all_commit(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.sqlite", SCHEMA)
    assert isinstance(store, Store)
    try:
        await asyncio.gather(
            *(store.write([Write("INSERT INTO item (name) VALUES (?)", [(f"n{i}",)])])
              for i in range(500))
        )  # fmt: skip
        assert await store.read("SELECT count(*) FROM item") == [(500,)]
        assert store.commits < 50  # batched, not one transaction per call
    finally:
        await store.close()


async def test_a_failing_call_fails_alone_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.sqlite", SCHEMA)
    insert = "INSERT INTO item (name) VALUES (?)"
    try:
        await store.write([Write(insert, [("taken",)])])
        good = store.write([Write(insert, [("a",), ("b",)])])
        bad = store.write([Write(insert, [("c",)]), Write(insert, [("taken",)])])
        results = await asyncio.gather(good, bad, return_exceptions=True)
        assert results[0] is None
        assert isinstance(results[1], sqlite3.IntegrityError)
        names = {name for (name,) in await store.read("SELECT name FROM item")}
        assert names == {"taken", "a", "b"}  # "c" went with its failed call
    finally:
        await store.close()


async def test_schema_versions_are_applied_once_and_newer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(path, SCHEMA)
    await store.close()
    upgraded = (*SCHEMA, "ALTER TABLE item ADD COLUMN note TEXT")
    store = await SqliteStore.open(path, upgraded)
    await store.write([Write("INSERT INTO item (name, note) VALUES (?, ?)", [("x", "y")])])
    await store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (2,)
    with pytest.raises(SchemaTooNew):
        await SqliteStore.open(path, SCHEMA)


async def test_readers_see_commits_while_an_outside_writer_holds_a_transaction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(path, SCHEMA)
    try:
        await store.write([Write("INSERT INTO item (name) VALUES (?)", [("seen",)])])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO item (name) VALUES ('uncommitted')")
        async with asyncio.timeout(2):
            assert await store.read("SELECT name FROM item") == [("seen",)]
        other.execute("ROLLBACK")
        other.close()
    finally:
        await store.close()
