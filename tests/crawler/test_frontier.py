"""The SQLite frontier holds fetchers back while too many outcomes wait for their commit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from adapters.sqlite import SqliteStore, Write
from examples.crawler.frontier import DONE, SCHEMA, Outcome, SqliteFrontier


class HeldCommits(SqliteStore):
    """A real store whose submitted writes report their commit only once released."""

    released: asyncio.Event

    def submit(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        committed = super().submit(writes)
        reported: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def report() -> None:
            await committed
            await self.released.wait()
            reported.set_result(None)

        reported.task = asyncio.create_task(report())  # type: ignore[attr-defined]
        return reported


async def test_no_more_urls_are_handed_out_than_may_wait_for_their_commit(tmp_path: Path) -> None:
    store = await HeldCommits.open(tmp_path / "f.sqlite", SCHEMA)
    assert isinstance(store, HeldCommits)
    store.released = asyncio.Event()
    store.released.set()
    try:
        frontier = SqliteFrontier(store, window=50, max_pages=None, max_uncommitted=3)
        await frontier.start([f"http://a.test/{n}" for n in range(10)])
        jobs = [await frontier.next() for _ in range(3)]
        store.released.clear()
        fourth = asyncio.create_task(frontier.next())
        for job in jobs:
            assert job is not None
            frontier.complete(job, Outcome(DONE, 200), [])
        await asyncio.sleep(0.2)
        assert not fourth.done()  # three outcomes wait for their commit
        store.released.set()
        job = await asyncio.wait_for(fourth, 10)
        assert job is not None
        assert job.url == "http://a.test/3"
    finally:
        await store.close()


async def test_a_link_found_twice_is_queued_and_handed_out_once(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "f.sqlite", SCHEMA)
    try:
        frontier = SqliteFrontier(store, window=50, max_pages=None, max_uncommitted=8)
        await frontier.start(["http://a.test/0"])
        seed = await frontier.next()
        assert seed is not None
        links = frontier.add_links(("http://a.test/1", "http://a.test/2"), 1)
        frontier.complete(seed, Outcome(DONE, 200), links)
        first = await frontier.next()
        assert first is not None
        again = frontier.add_links(("http://a.test/2",), 2)  # found again by another worker
        frontier.complete(first, Outcome(DONE, 200), again)
        second = await frontier.next()
        assert second is not None
        assert second.url == "http://a.test/2"
        frontier.complete(second, Outcome(DONE, 200), [])
        assert await asyncio.wait_for(frontier.next(), 10) is None
        rows = await store.read("SELECT url, depth FROM urls ORDER BY id")
        assert rows == [("http://a.test/0", 0), ("http://a.test/1", 1), ("http://a.test/2", 1)]
    finally:
        await store.close()
