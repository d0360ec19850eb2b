"""The crawl itself: fetch tasks on the loop, parsing in worker processes, outcomes stored.

``concurrency`` fetch tasks each take a URL from the frontier, check robots.txt and its
extension, fetch it (the fetcher applies per-host limits and delays, and offers every
redirect hop to the same checks), send the body to a worker process for parsing, and hand
the outcome and the new links back to the frontier, which stores them atomically. The
page is stored under its identity (:func:`identity_of`), the other URLs that led to it
are its aliases. Every per-URL problem, even an unexpected exception, ends as that URL's
outcome with a reason.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from adapters.aiohttp import FetchResult
from examples.crawler.fetching import Fetcher

from .dispatch import ParseDispatcher
from .frontier import Job, Outcome
from .identity import ALIAS, DONE, FAILED, SKIPPED, STATE_NAMES, alias_reason
from .parsed import Parsed
from .recent import RecentSet
from .robots import RobotsCache
from .urls import InvalidUrl, Scope, extension_refusal, normalise

LATENCY_SAMPLES_KEPT = 50_000  # fetch transit samples kept for percentiles
# URLs handed out or stored this run that a redirect need not request again (about 2 MB).
KNOWN_URLS_KEPT = 20_000


class Frontier(Protocol):
    """What the crawl needs from a frontier (SQLite or Redis)."""

    stopping: bool
    # True when this process stores every page of the crawl (SQLite): a page stored here
    # through an alias need not be fetched through its own URL. False when crawlers share
    # the frontier, and whichever claimed the identity first stores it.
    stores_every_page: bool

    async def next(self) -> Job | None: ...

    def add_links(self, links: tuple[str, ...], depth: int) -> list[tuple[str, int]]: ...

    def complete(self, job: Job, outcome: Outcome, links: list[tuple[str, int]]) -> None: ...

    def record_unqueued(self, url: str, depth: int, state: int, reason: str) -> None: ...

    def queued_in_memory(self) -> int: ...

    def wake(self) -> None: ...


@dataclass
class CrawlStats:
    """Live counters, read by the progress display and the summary."""

    started_at: float = field(default_factory=time.monotonic)
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    # 8 bytes a sample, not a float object each (about 0.5 MB less over 20,000 pages).
    transit_s: array[float] = field(default_factory=lambda: array("d"))

    def record(self, outcome: Outcome) -> None:
        self.outcomes[STATE_NAMES[outcome.state]] += 1
        if outcome.reason:
            self.reasons[outcome.reason.split(":")[0][:40]] += 1

    def record_transit(self, transit_s: float) -> None:
        if len(self.transit_s) < LATENCY_SAMPLES_KEPT:
            self.transit_s.append(transit_s)

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())

    def pages_per_s(self) -> float:
        elapsed_s = time.monotonic() - self.started_at
        return self.finished / elapsed_s if elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class CrawlSettings:
    """What the fetch tasks need to know."""

    concurrency: int
    max_depth: int | None
    scope: Scope = field(default_factory=Scope)


class Crawl:
    """One crawl over a frontier; :meth:`run` returns when it is over or stopped."""

    def __init__(
        self,
        settings: CrawlSettings,
        frontier: Frontier,
        fetcher: Fetcher,
        robots: RobotsCache,
        parser: ParseDispatcher,
    ) -> None:
        self.settings = settings
        self.frontier = frontier
        self.fetcher = fetcher
        self.robots = robots
        self.parser = parser
        self.stats = CrawlStats()
        # A prefilter only: the database's unique pages.url is what stores a page once.
        self._known = RecentSet(KNOWN_URLS_KEPT)
        self._stored_elsewhere = RecentSet(KNOWN_URLS_KEPT)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for number in range(self.settings.concurrency):
                group.create_task(self._fetch_loop(), name=f"fetch-{number}")

    def stop(self) -> None:
        """Take no new URL; the ones in flight finish and are stored."""
        self.frontier.stopping = True
        self.frontier.wake()

    async def _fetch_loop(self) -> None:
        while (job := await self.frontier.next()) is not None:
            self.stats.in_flight += 1
            try:
                outcome, links = await self._crawl_one(job)
            except Exception as exc:  # a bug or a surprise must cost one page, not the crawl
                outcome, links = Outcome(FAILED, reason=f"crawler: {type(exc).__name__}: {exc}"), []
            finally:
                self.stats.in_flight -= 1
            self.stats.record(outcome)
            self.frontier.complete(job, outcome, links)

    async def refusal(self, url: str) -> str | None:
        """Why ``url`` is not requested (its extension, robots.txt), or ``None``."""
        return extension_refusal(url, self.settings.scope.skip_extensions) or (
            await self.robots.refusal(url)
        )

    async def _hop_refusal(self, url: str) -> str | None:
        refusal = await self.refusal(url)
        if refusal is not None:
            return f"{refusal}: redirect to {url[:300]}"
        if _normal(url) in self._known:
            return KNOWN_TARGET  # crawled, or being crawled, through its own URL
        return None

    async def _crawl_one(self, job: Job) -> tuple[Outcome, list[tuple[str, int]]]:
        refusal = await self.refusal(job.url)
        if refusal is not None:
            return Outcome(SKIPPED, reason=refusal), []
        if self.frontier.stores_every_page and job.url in self._stored_elsewhere:
            return Outcome(DONE, reason=STORED_ELSEWHERE), []
        self._known.add_new(job.url)
        fetched = await self.fetcher.fetch(job.url, check_hop=self._hop_refusal)
        if fetched.error == KNOWN_TARGET:
            identity = _normal(fetched.final_url)
            aliases = tuple(_normal(url) for url in fetched.chain)
            return Outcome(
                ALIAS, fetched.status, alias_reason(identity), None, identity, aliases
            ), []
        if fetched.status:
            self.stats.record_transit(fetched.transit_s)
        if not fetched.ok:
            state = SKIPPED if fetched.filtered else FAILED
            return Outcome(state, fetched.status, fetched.error), []
        depth = job.depth + 1
        max_depth = self.settings.max_depth
        follow = max_depth is None or depth <= max_depth
        final_url = _normal(fetched.final_url)
        parsed = await self.parser.parse(final_url, fetched.body, follow, fetched.charset)
        if parsed.error is not None:
            return Outcome(FAILED, fetched.status, parsed.error), []
        for href, reason in parsed.invalid_links:
            self.frontier.record_unqueued(href, depth, FAILED, reason)
        for href, reason in parsed.skipped_links:
            self.frontier.record_unqueued(href, depth, SKIPPED, reason)
        links = self.frontier.add_links(parsed.links, depth) if parsed.links else []
        identity = identity_of(final_url, parsed.canonical, self.settings.scope)
        aliases = tuple(dict.fromkeys(_normal(url) for url in (*fetched.chain, final_url)))
        page = _page_row(identity, final_url, job, fetched, parsed)
        if identity != job.url:
            self._known.add_new(identity)
            self._stored_elsewhere.add_new(identity)
        if identity == job.url:
            return Outcome(
                DONE, fetched.status, page=page, identity=identity, aliases=aliases
            ), links
        reason = alias_reason(identity)
        return Outcome(ALIAS, fetched.status, reason, page, identity, aliases), links


KNOWN_TARGET = "redirect to a URL already known"
STORED_ELSEWHERE = "stored through an alias"


def identity_of(final_url: str, canonical: str | None, scope: Scope) -> str:
    """The URL a page is stored under: its ``rel=canonical`` on the same host, else its own.

    ``final_url`` is where the redirects ended, normalised.
    """
    if canonical and scope.same_host_canonical and canonical != final_url:
        try:
            canonical = normalise(canonical)
        except InvalidUrl:
            return final_url
        if _origin(canonical) == _origin(final_url):
            return canonical
    return final_url


def _origin(url: str) -> str:
    end = url.find("/", url.find("//") + 2)
    return url if end < 0 else url[:end]


def _normal(url: str) -> str:
    try:
        return normalise(url)
    except InvalidUrl:
        return url


def _page_row(
    identity: str, final_url: str, job: Job, fetched: FetchResult, parsed: Parsed
) -> tuple[object, ...]:
    return (
        identity,
        final_url,
        fetched.status,
        job.depth,
        parsed.title,
        parsed.text,
        parsed.text_chars,
        parsed.meta,
        parsed.canonical,
        parsed.links_found,
        parsed.extra,
        round(fetched.transit_s * 1000, 3),
        time.time(),
        parsed.encoding,
    )
