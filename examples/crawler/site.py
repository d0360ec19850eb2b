"""A synthetic website on 127.0.0.1, for the demo, the tests and the benchmark.

Pages ``/p/0`` ... ``/p/{pages-1}``: each is about ``page_bytes`` of HTML with ``links``
links to other pages. Page ``n`` always links to ``2n+1`` and ``2n+2``, so every page is
reachable from ``/p/0``; the other links are pseudo-random but fixed. The server counts
every path it serves (:attr:`SyntheticSite.served`), which is how tests and the benchmark
count pages independently of the crawler. With ``traps=True`` it also serves the pages a
crawler must survive (see :data:`TRAP_LINKS`).
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

FILLER_WORDS = [
    "hybrid",
    "asyncio",
    "worker",
    "process",
    "parse",
    "crawl",
    "frontier",
    "latency",
    "throughput",
    "sqlite",
    "redis",
    "stream",
    "polite",
    "robots",
    "canonical",
    "anchor",
    "document",
    "paragraph",
    "sentence",
    "engine",
    "loop",
]
HUGE_CHUNK_BYTES = 64 * 1024
CALENDAR_FIRST_YEAR = 2000

# Links from /p/0 to every trap when traps=True: (href, what the crawler must record).
TRAP_LINKS = (
    "/trap/loop/a",  # a redirect loop
    "/trap/calendar/2000/1",  # an endless calendar
    "/trap/huge",  # an endless body
    "/trap/slow",  # slower than any test timeout
    "/trap/busy",  # 429 with Retry-After once, then the page
    "/trap/binary",  # random bytes served as text/html
    "/trap/malformed",  # broken HTML that still has links
    "/trap/image",  # not HTML, and no extension says so: only its Content-Type
    "/trap/missing",  # 404
    "/private/secret",  # disallowed by robots.txt
    "/trap/based",  # a <base href>, a nofollow link and a canonical link
    "http://nonexistent.invalid/",  # DNS failure
    "http://[broken/",  # an invalid URL
)
DEFAULT_ROBOTS = "User-agent: *\nDisallow: /private/\n"

Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass
class SyntheticSite:
    """The site's shape and its server-side counters.

    Attributes:
        pages: number of regular pages.
        links: links per page.
        page_bytes: approximate size of each page.
        delay_s: time the server waits before answering each page.
        traps: serve the trap pages and link them from ``/p/0``.
        robots_txt: the robots.txt body (``None``: 404).
        served: how many times each path was served with a 200.
        served_at: ``time.monotonic()`` of each regular page served, in order.
    """

    pages: int = 200
    links: int = 20
    page_bytes: int = 8 * 1024
    delay_s: float = 0.0
    traps: bool = False
    robots_txt: str | None = DEFAULT_ROBOTS
    served: Counter[str] = field(default_factory=Counter)
    served_at: list[float] = field(default_factory=list)
    busy_hits: int = 0

    def page_paths(self) -> list[str]:
        return [f"/p/{n}" for n in range(self.pages)]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._home)
        app.router.add_get("/p/{n}", self._page)
        app.router.add_get("/robots.txt", self._robots)
        if self.traps:
            self._add_traps(app)
        return app

    def render_page(self, n: int) -> bytes:
        rng = random.Random(n)
        targets = [t for t in (2 * n + 1, 2 * n + 2) if t < self.pages]
        while len(targets) < min(self.links, self.pages):
            targets.append(rng.randrange(self.pages))
        anchors = "".join(f'<li><a href="/p/{t}">page {t}</a></li>' for t in targets)
        if self.traps and n == 0:
            anchors += "".join(f'<li><a href="{href}">trap</a></li>' for href in TRAP_LINKS)
        head = (
            f"<!doctype html><html><head><title>Page {n}</title>"
            f'<meta name="description" content="Synthetic page {n}"></head><body>'
            f"<h1>Page {n}</h1><ul>{anchors}</ul>"
        )
        filler = _filler(self.page_bytes)
        start = rng.randrange(len(filler) // 2) if filler else 0
        paragraphs = filler[start:] + filler[:start]
        text = paragraphs[: max(0, self.page_bytes - len(head))]
        return (head + text + "</body></html>").encode()

    async def _home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/p/0")

    async def _page(self, request: web.Request) -> web.Response:
        try:
            n = int(request.match_info["n"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= n < self.pages:
            raise web.HTTPNotFound()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.served[request.path] += 1
        self.served_at.append(time.monotonic())
        return web.Response(body=self.render_page(n), content_type="text/html")

    async def _robots(self, request: web.Request) -> web.Response:
        if self.robots_txt is None:
            raise web.HTTPNotFound()
        return web.Response(text=self.robots_txt, content_type="text/plain")

    def _add_traps(self, app: web.Application) -> None:
        routes = app.router
        routes.add_get("/trap/loop/a", _redirect_to("/trap/loop/b"))
        routes.add_get("/trap/loop/b", _redirect_to("/trap/loop/a"))
        routes.add_get("/trap/calendar/{year}/{month}", self._calendar)
        routes.add_get("/trap/huge", _huge)
        routes.add_get("/trap/slow", _slow)
        routes.add_get("/trap/busy", self._busy)
        routes.add_get("/trap/binary", self._binary)
        routes.add_get("/trap/malformed", self._malformed)
        routes.add_get("/trap/image", self._image)
        routes.add_get("/private/secret", self._html("<title>secret</title>"))
        routes.add_get("/trap/based", self._html(BASED_PAGE))
        routes.add_get("/base/target", self._html("<title>base target</title>"))
        routes.add_get("/canonical/target", self._html("<title>canonical</title>"))
        routes.add_get("/nofollow/target", self._html("<title>nofollow</title>"))

    async def _calendar(self, request: web.Request) -> web.Response:
        year, month = int(request.match_info["year"]), int(request.match_info["month"])
        later = (year + month // 12, month % 12 + 1)
        self.served[request.path] += 1
        body = (
            f'<title>{year}-{month}</title><a href="/trap/calendar/{later[0]}/{later[1]}">next</a>'
        )
        return web.Response(text=body, content_type="text/html")

    async def _busy(self, request: web.Request) -> web.Response:
        self.busy_hits += 1
        if self.busy_hits == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        self.served[request.path] += 1
        return web.Response(text="<title>busy, then fine</title>", content_type="text/html")

    async def _binary(self, request: web.Request) -> web.Response:
        self.served[request.path] += 1
        body = random.Random(7).randbytes(4096)
        return web.Response(body=body, content_type="text/html")

    async def _malformed(self, request: web.Request) -> web.Response:
        self.served[request.path] += 1
        body = '<html><title>broken</title><body><div><a href="/p/1">one<p>unclosed <b><i>'
        return web.Response(text=body, content_type="text/html")

    async def _image(self, request: web.Request) -> web.Response:
        self.served[request.path] += 1
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(64), content_type="image/png")

    def _html(self, body: str) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            self.served[request.path] += 1
            return web.Response(text=body, content_type="text/html")

        return handle


@functools.cache
def _filler(size: int) -> str:
    """Paragraphs of filler text, about ``size`` characters, built once per size."""
    rng = random.Random(size)
    paragraphs = []
    length = 0
    while length < size:
        sentence = " ".join(rng.choice(FILLER_WORDS) for _ in range(12))
        paragraphs.append(f"<p>{sentence}.</p> ")
        length += len(sentence) + 9
    return "".join(paragraphs)


BASED_PAGE = (
    '<html><head><title>based</title><base href="/base/">'
    '<link rel="canonical" href="/canonical/target"></head><body>'
    '<a href="target">relative to base</a>'
    '<a rel="nofollow" href="/nofollow/target">not followed</a></body></html>'
)


def _redirect_to(location: str) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        raise web.HTTPFound(location)

    return handle


async def _huge(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html"})
    await response.prepare(request)
    chunk = b"<p>" + b"x" * (HUGE_CHUNK_BYTES - 3)
    try:
        while True:  # endless: the client must cut it
            await response.write(chunk)
    except ConnectionError:
        return response


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(3600)
    return web.Response(text="too late", content_type="text/html")


class Site(Protocol):
    """A site that can be served: :class:`SyntheticSite` or ``realsite.RealWorldSite``."""

    def app(self) -> web.Application: ...


class RunningSite:
    """A :class:`Site` served on 127.0.0.1; use ``async with``."""

    def __init__(self, site: Site, port: int = 0) -> None:
        self.site = site
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RunningSite:
        self._runner = web.AppRunner(
            self.site.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        tcp = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await tcp.start()
        self.port = int(tcp._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
