"""What no page can do to the store: kill the writer, hang the crawl, or vanish unrecorded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.sqlite import SqliteStore, StoreFailed, Write
from examples.crawler.frontier import DONE, FAILED, SCHEMA, Outcome, SqliteFrontier
from examples.crawler.site import RunningSite, SyntheticSite

from .support import run_crawler

ITEMS = ("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",)
INSERT = "INSERT INTO item (name) VALUES (?)"


async def test_a_lone_surrogate_fails_its_own_write_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    # A Location header of bytes that are not UTF-8 once put "\udcff" into a reason: the
    # UnicodeEncodeError killed the writer task, and every later write waited forever.
    store = await SqliteStore.open(tmp_path / "s.sqlite", ITEMS)
    try:
        async with asyncio.timeout(10):
            hostile = store.write([Write(INSERT, [("ftp://x/\udcff",)])])
            good = store.write([Write(INSERT, [("fine",)])])
            results = await asyncio.gather(hostile, good, return_exceptions=True)
            assert isinstance(results[0], UnicodeEncodeError)
            assert results[1] is None
            await store.write([Write(INSERT, [("later",)])])
            names = {name for (name,) in await store.read("SELECT name FROM item")}
        assert names == {"fine", "later"}
    finally:
        await store.close()


class WriterCrash(BaseException):
    """Not an error of one call (those are all ``Exception``): the writer itself stops."""


class DyingWriter(SqliteStore):
    """A real store whose writer task dies on the transaction after ``commits_left``."""

    commits_left = 1

    async def _run_transaction(self, calls: Sequence[Sequence[Write]]) -> None:
        if self.commits_left == 0:
            raise WriterCrash
        self.commits_left -= 1
        await super()._run_transaction(calls)


async def test_a_dead_writer_fails_every_pending_and_later_write_instead_of_hanging(
    tmp_path: Path,
) -> None:
    store = await DyingWriter.open(tmp_path / "s.sqlite", ITEMS)
    try:
        await store.write([Write(INSERT, [("first",)])])
        async with asyncio.timeout(10):
            with pytest.raises(WriterCrash):
                await store.write([Write(INSERT, [("kills it",)])])
            with pytest.raises(StoreFailed, match="writer stopped"):
                await store.write([Write(INSERT, [("after",)])])
    finally:
        await store.close()


async def test_a_failed_commit_records_the_url_as_failed_not_silently_skipped(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.sqlite"
    store = await SqliteStore.open(db, SCHEMA)
    await store.write([Write(_REJECT_PAGE, [()])])
    try:
        frontier = SqliteFrontier(store, window=10, max_pages=None, max_uncommitted=4)
        await frontier.start(["http://a.test/rejected", "http://a.test/fine"])
        async with asyncio.timeout(10):
            for _ in range(2):
                job = await frontier.next()
                assert job is not None
                page = (job.url, job.url, 200, 0, "t", "", 0, "{}", None, 0, "{}", 1, 0, "utf-8")
                frontier.complete(job, Outcome(DONE, 200, page=page), [])
            assert await frontier.next() is None
        rows = dict(
            ((url, (state, reason)) for url, state, reason in
             await store.read("SELECT url, state, reason FROM urls"))
        )  # fmt: skip
    finally:
        await store.close()
    assert rows["http://a.test/fine"] == (DONE, None)
    state, reason = rows["http://a.test/rejected"]
    assert state == FAILED
    assert reason is not None
    assert "store: IntegrityError" in reason
    assert "disk says no" in reason


async def test_when_no_outcome_can_be_recorded_the_frontier_raises_one_clear_error(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.sqlite"
    store = await SqliteStore.open(db, SCHEMA)
    await store.write([Write(_REJECT_STATE, [()])])
    try:
        frontier = SqliteFrontier(store, window=10, max_pages=None, max_uncommitted=4)
        await frontier.start(["http://a.test/0", "http://a.test/1"])
        job = await frontier.next()
        assert job is not None
        frontier.complete(job, Outcome(DONE, 200), [])
        async with asyncio.timeout(10):
            with pytest.raises(StoreFailed, match="cannot record the crawl's outcomes"):
                while await frontier.next() is not None:
                    pass
    finally:
        await store.close()


# Triggers: real SQLite refusing real writes, as a full disk or a broken file would.
_REJECT_PAGE = (
    "CREATE TRIGGER reject_page BEFORE UPDATE ON urls "
    "WHEN NEW.url LIKE '%rejected' AND NEW.state = 1 "
    "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
)
_REJECT_STATE = (
    "CREATE TRIGGER reject_state BEFORE UPDATE ON urls "
    "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
)



async def test_a_crawl_whose_store_refuses_every_outcome_ends_with_one_clear_error(
    tmp_path: Path,
) -> None:
    db = tmp_path / "broken.sqlite"
    store = await SqliteStore.open(db, SCHEMA)
    await store.write([Write(_REJECT_STATE, [()])])
    await store.close()
    site = SyntheticSite(pages=50, links=4, page_bytes=1024)
    async with RunningSite(site) as running:
        code, _, err = await run_crawler(
            f"{running.url}/p/0", "--db", str(db), "--workers", "1", timeout_s=60
        )
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: the crawl stopped: cannot record the crawl's outcomes")
    assert "disk says no" in lines[-1]
    assert "Traceback" not in err
