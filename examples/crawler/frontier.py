"""The crawl frontier on disk (SQLite), with a bounded in-memory window.

Every URL ever discovered is one row of ``urls`` (the seen set); its ``state`` says
whether it is queued, done, failed or skipped. Queued rows are loaded in id order, a
window at a time. A page's result, its new links and the state that marks it done are
written by one :meth:`SqliteFrontier.complete` call, which the store commits in one
transaction: after a crash the same command picks up every queued row again, so nothing
is lost and at most the pages that were in flight are fetched twice. Pages handed out and
not yet committed are capped (``max_uncommitted``), so a slow disk holds the fetchers back
rather than letting that number, and the refetch after a crash, grow.

A page is stored under its canonical URL (where its redirects ended, or its same-host
``rel=canonical``): ``pages.url`` is unique, so a document reached through several URLs is
stored once, by whichever got there first. Every other URL that led to it is an alias:
state ``alias``, and a row of ``aliases``. A commit that fails is not dropped: its URL is
recorded as failed with the reason; if even that cannot be written, the store is broken
and :meth:`SqliteFrontier.next` raises :class:`~adapters.sqlite.StoreFailed`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from adapters.sqlite import SqliteStore, StoreFailed, Write

from .identity import ALIAS, DONE, FAILED, QUEUED, SKIPPED, STATE_NAMES, identity_writes, safe_text

__all__ = ["ALIAS", "DONE", "FAILED", "QUEUED", "SKIPPED", "STATE_NAMES"]

SCHEMA = (
    """
    CREATE TABLE urls (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL UNIQUE,
        depth INTEGER NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        status INTEGER,
        reason TEXT
    );
    CREATE INDEX urls_queued ON urls(id) WHERE state = 0;
    CREATE TABLE pages (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL,
        final_url TEXT NOT NULL,
        status INTEGER NOT NULL,
        depth INTEGER NOT NULL,
        title TEXT NOT NULL,
        text TEXT NOT NULL,
        text_chars INTEGER NOT NULL,
        meta TEXT NOT NULL,
        canonical TEXT,
        links INTEGER NOT NULL,
        extra TEXT NOT NULL,
        transit_ms REAL NOT NULL,
        fetched_at REAL NOT NULL
    );
    CREATE INDEX pages_url ON pages(url)
    """,
    # Canonical identity: one page per URL, the aliases that led to it, the encoding used.
    """
    ALTER TABLE pages ADD COLUMN encoding TEXT;
    DELETE FROM pages WHERE id NOT IN (SELECT min(id) FROM pages GROUP BY url);
    DROP INDEX pages_url;
    CREATE UNIQUE INDEX pages_url ON pages(url);
    CREATE TABLE aliases (alias TEXT PRIMARY KEY, url TEXT NOT NULL) WITHOUT ROWID
    """,
)
INSERT_URL = "INSERT OR IGNORE INTO urls (url, depth) VALUES (?, ?)"
INSERT_OUTCOME = (
    "INSERT INTO urls (url, depth, state, status, reason) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (url) DO NOTHING"
)
SET_STATE = "UPDATE urls SET state = ?, status = ?, reason = ? WHERE id = ?"
# A page already stored under the same canonical URL wins: the later copy is dropped.
INSERT_PAGE = (
    "INSERT OR IGNORE INTO pages (url, final_url, status, depth, title, text, text_chars, "
    "meta, canonical, links, extra, transit_ms, fetched_at, encoding) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


@dataclass(frozen=True, slots=True)
class Job:
    """One URL to crawl; ``key`` identifies it in its frontier."""

    key: Any
    url: str
    depth: int


@dataclass(frozen=True)
class Outcome:
    """How one URL ended: its state, HTTP status, reason and page row (when done).

    ``identity`` is the canonical URL of the page (``None``: the job's own URL) and
    ``aliases`` the other URLs that led to it (redirect hops), recorded as its aliases.
    """

    state: int
    status: int = 0
    reason: str | None = None
    page: tuple[Any, ...] | None = None
    identity: str | None = None
    aliases: tuple[str, ...] = ()


class SqliteFrontier:
    """Hands out queued URLs in discovery order and records their outcomes atomically.

    Args:
        store: the crawl's database.
        window: queued URLs held in memory at most.
        max_pages: stop handing out URLs after this many outcomes (``None``: no limit).
        max_uncommitted: URLs handed out whose outcome is not committed yet, at most.
    """

    def __init__(
        self,
        store: SqliteStore,
        *,
        window: int,
        max_pages: int | None,
        max_uncommitted: int,
    ) -> None:
        if max_uncommitted < 1:
            raise ValueError(f"max_uncommitted must be at least 1, not {max_uncommitted}")
        self.store = store
        self._max_uncommitted = max_uncommitted
        self._window: deque[Job] = deque()
        self._window_size = window
        self._max_pages = max_pages
        self._cursor = 0
        self._handed_out = 0
        self._in_flight = 0
        self._progress = asyncio.Event()
        self._refill_lock = asyncio.Lock()
        self._failure: StoreFailed | None = None
        self.stopping = False
        self.stores_every_page = True

    async def start(self, seeds: Iterable[str]) -> int:
        """Queue ``seeds`` (known URLs are ignored); return outcomes already recorded."""
        await self.store.write([Write(INSERT_URL, [(url, 0) for url in seeds])])
        rows = await self.store.read("SELECT count(*) FROM urls WHERE state != 0")
        recorded = int(rows[0][0])
        self._handed_out = recorded
        return recorded

    async def next(self) -> Job | None:
        """The next URL to crawl, or ``None`` when the crawl is over (or stopping).

        Raises:
            StoreFailed: an outcome could not be recorded at all (the store is broken).
        """
        while not self.stopping:
            if self._failure is not None:
                raise self._failure
            if self._max_pages is not None and self._handed_out >= self._max_pages:
                return None
            if self._in_flight >= self._max_uncommitted:
                self._progress.clear()
                await self._progress.wait()
                continue
            if self._window:
                self._handed_out += 1
                self._in_flight += 1
                return self._window.popleft()
            async with self._refill_lock:
                if self._window:
                    continue
                await self._refill()
                if self._window:
                    continue
                if self._in_flight == 0:
                    return None
                self._progress.clear()
            await self._progress.wait()
        if self._failure is not None:
            raise self._failure
        return None

    def add_links(self, links: Iterable[str], depth: int) -> list[tuple[str, int]]:
        """The links as rows for :meth:`complete`; known ones are ignored when stored.

        No cache of seen URLs here: each worker already drops the links it returned
        before, so a parent cache saved about one ignored insert per page, and held
        3 MB over 20,000 pages.
        """
        return [(url, depth) for url in links]

    def complete(self, job: Job, outcome: Outcome, links: list[tuple[str, int]]) -> None:
        """Record ``outcome`` and queue ``links``, all in one transaction.

        Should that transaction fail, the URL is recorded as failed with the reason.
        """
        writes = [Write(INSERT_URL, links)] if links else []
        writes += identity_writes(job.url, job.depth, outcome, INSERT_PAGE)
        reason = safe_text(outcome.reason)
        writes.append(Write(SET_STATE, [(outcome.state, outcome.status, reason, job.key)]))
        self.store.submit(writes).add_done_callback(
            lambda future: self._committed(future, job, outcome.status)
        )

    def record_unqueued(self, url: str, depth: int, state: int, reason: str) -> None:
        """Record a URL that is never fetched (e.g. an invalid link) with its reason."""
        row = (safe_text(url), depth, state, 0, safe_text(reason))
        self.store.submit([Write(INSERT_OUTCOME, [row])]).add_done_callback(self._fail_if_broken)

    def queued_in_memory(self) -> int:
        return len(self._window)

    def wake(self) -> None:
        self._progress.set()

    def _committed(self, future: asyncio.Future[None], job: Job, status: int) -> None:
        error = None if future.cancelled() else future.exception()
        if error is None or isinstance(error, StoreFailed):
            self._settled(future)
            return
        reason = (safe_text(f"store: {type(error).__name__}: {error}") or "")[:500]
        retry = [Write(SET_STATE, [(FAILED, status, reason, job.key)])]
        self.store.submit(retry).add_done_callback(self._settled)

    def _settled(self, future: asyncio.Future[None]) -> None:
        self._in_flight -= 1
        error = None if future.cancelled() else future.exception()
        if error is not None:
            self._fail(error)
        self._progress.set()

    def _fail_if_broken(self, future: asyncio.Future[None]) -> None:
        error = None if future.cancelled() else future.exception()
        if isinstance(error, StoreFailed):
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = StoreFailed(f"cannot record the crawl's outcomes: {error}")
        self._progress.set()

    async def _refill(self) -> None:
        await self.store.flush()
        rows = await self.store.read(
            "SELECT id, url, depth FROM urls WHERE state = 0 AND id > ? ORDER BY id LIMIT ?",
            (self._cursor, self._window_size),
        )
        for key, url, depth in rows:
            self._window.append(Job(key, url, depth))
            self._cursor = key


async def counts(store: SqliteStore) -> dict[str, int]:
    """URLs per state, by state name."""
    rows = await store.read("SELECT state, count(*) FROM urls GROUP BY state")
    found = {STATE_NAMES.get(state, str(state)): int(n) for state, n in rows}
    return {name: found.get(name, 0) for name in STATE_NAMES.values()}
