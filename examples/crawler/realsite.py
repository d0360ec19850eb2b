"""A local site shaped like the real web, for the tests and the benchmark (127.0.0.1 only).

What a crawler meets on it, all linked from ``/``:

- redirect chains into an area robots.txt disallows (``/login`` -> ``/private/login``,
  ``/go/secret`` -> ``/go/hop`` -> ``/private/deep``), and robots.txt wildcards
  (``/*?*sessionid=``, ``/*.php$``);
- aliases of one document: ``/blog`` and ``/blog/``, short links ``/p/{n}``, old slugs
  ``/old/post-{n}``, a trailing slash, and tracking parameters whose page names the clean
  URL with ``rel=canonical``;
- pages in GBK, Shift_JIS and windows-1252, each declared in the header, in a ``<meta>``,
  and not at all (:data:`TITLES` is what each title must read);
- links to binary files, 404, 500, a 500 that happens once, a gzip body, an endless
  calendar, a ``Location`` header and a ``Content-Type`` of raw non-UTF-8 bytes, and a
  hostile body.

The posts ``/post/post-{n}`` are the bulk of the site: post ``n`` links to ``2n+1`` and
``2n+2`` and to pseudo-random others, through every kind of alias. The server counts each
request by path and query (:attr:`RealWorldSite.requests`) and each 200 answer
(:attr:`RealWorldSite.served`), so a test can count what a crawler asked for.
"""

# ruff: noqa: RUF001 - the pages are in Chinese, Japanese and French on purpose

from __future__ import annotations

import asyncio
import gzip
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from .site import _filler

ROBOTS_TXT = "User-agent: *\nDisallow: /private/\nDisallow: /*?*sessionid=\nDisallow: /*.php$\n"
CALENDAR_FIRST_YEAR = 2000
ENCODINGS = {"gbk": "gbk", "sjis": "shift_jis", "cp1252": "cp1252"}  # path -> Python codec
# How each page declares its encoding: header label, meta tag.
HEADER_LABELS = {"gbk": "GBK", "sjis": "Shift_JIS", "cp1252": "ISO-8859-1"}  # browsers: 1252
META_TAGS = {
    "gbk": '<meta charset="gbk">',
    "sjis": '<meta http-equiv="Content-Type" content="text/html; charset=shift_jis">',
    "cp1252": '<meta charset="windows-1252">',
}
TITLES = {
    "gbk": "网络爬虫：按照规则抓取万维网信息的程序",
    "sjis": "ウェブクローラとは何か：検索エンジンの仕組み",
    "cp1252": "Café « crawler » — 5 € pour l’œuvre naïve",
}
TEXTS = {
    "gbk": "网络爬虫是一种按照一定的规则，自动地抓取万维网信息的程序或者脚本。它们被广泛用于"
    "互联网搜索引擎或其他类似网站，可以自动采集所有其能够访问到的页面内容，以获取或更新"
    "这些网站的内容和检索方式。",
    "sjis": "ウェブクローラは、ウェブ上の文書や画像などを周期的に取得し、自動的にデータベース化"
    "するプログラムである。検索エンジンの多くはこのプログラムを用いて情報を集めている。",
    "cp1252": "Un robot d’indexation — ou « crawler » — est un logiciel qui explore "
    "automatiquement le Web. Il coûte 5 € par mois : très économique, n’est-ce pas ? "
    "Déjà vu, façade, naïve, œuvre, señor, Müller, Ærø.",
}
INTL_PATHS = tuple(
    f"/intl/{lang}/{how}" for lang in ENCODINGS for how in ("header", "meta", "none")
)
DISALLOWED_LINKS = ("/login", "/go/secret", "/search?q=crawler&sessionid=42", "/print.php")
BINARY_LINKS = ("/files/report.pdf", "/img/photo.jpg", "/dl/archive.zip")
HOSTILE_LINKS = ("/hostile/location", "/hostile/charset", "/hostile/body")
OTHER_LINKS = ("/blog", "/download/report", "/missing", "/broken", "/flaky", "/gz")
HOSTILE_BODY = (
    b'<html><head><meta charset="\xff\xfe-not-a-charset"><title>hostile &#xD800; body \xff\xfe'
    b'</title><base href="http://[::1/"></head><body>' + b"<div>" * 2000 + b"\xc3\x28 \xed\xa0\x80"
    b'<a href="http://[broken/">x</a><a href="/post/post-1\x00">nul</a>'
    b'<a title="' + b"A" * 100_000 + b'" href="/post/post-2">long</a></body></html>'
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RealWorldSite:
    """The site's shape and its server-side counters.

    Attributes:
        posts: number of posts (the regular pages).
        links: links per post.
        page_bytes: approximate size of each post.
        delay_s: time the server waits before answering each HTML page.
        robots_status: the status of ``/robots.txt`` (200 serves :data:`ROBOTS_TXT`).
        requests: requests received, by path and query, whatever the answer.
        served: 200 answers, by path and query.
    """

    posts: int = 100
    links: int = 10
    page_bytes: int = 4096
    delay_s: float = 0.0
    robots_status: int = 200
    requests: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)

    def post_paths(self) -> list[str]:
        return [f"/post/post-{n}" for n in range(self.posts)]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        add = app.router.add_get
        add("/", self._html(self._home))
        add("/robots.txt", self._robots)
        add("/post/{n:\\d+}", _redirect_to("/post/post-{n}"))  # not linked: a stray form
        add("/post/post-{n:\\d+}", self._html(self._post))
        add("/post/post-{n:\\d+}/", _redirect_to("/post/post-{n}"))
        add("/p/{n:\\d+}", _redirect_to("/post/post-{n}", status=301))
        add("/old/post-{n:\\d+}", _redirect_to("/post/post-{n}", status=301))
        add("/blog", _redirect_to("/blog/", status=301))
        add("/blog/", self._html(self._blog))
        add("/login", _redirect_to("/private/login"))
        add("/go/secret", _redirect_to("/go/hop"))
        add("/go/hop", _redirect_to("/private/deep"))
        add("/private/{tail:.*}", self._html(_private))
        add("/search", self._html(lambda request: "<title>search</title>"))
        add("/print.php", self._html(lambda request: "<title>print</title>"))
        add("/intl/{lang}/{how}", self._intl)
        for path in (*BINARY_LINKS, "/download/report"):
            add(path, _binary)
        add("/broken", _broken)
        add("/flaky", self._flaky)
        add("/gz", self._gzip)
        add("/calendar/{year:\\d+}/{month:\\d+}", self._html(_calendar))
        add("/hostile/location", _raw(b"302 Found", b"Location: ftp://x/\xff"))
        add("/hostile/charset", _raw(b"200 OK", b"Content-Type: text/html; charset=\xff\xfe"))
        add("/hostile/body", self._hostile_body)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests[request.path_qs] += 1
        response = await handler(request)
        if response.status == 200:
            self.served[request.path_qs] += 1
        return response

    async def _robots(self, request: web.Request) -> web.Response:
        if self.robots_status != 200:
            return web.Response(status=self.robots_status)
        return web.Response(text=ROBOTS_TXT, content_type="text/plain")

    def _html(self, render: Callable[[web.Request], str]) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return web.Response(text=render(request), content_type="text/html")

        return handle

    def _home(self, request: web.Request) -> str:
        hrefs = (
            *DISALLOWED_LINKS, *BINARY_LINKS, *HOSTILE_LINKS, *OTHER_LINKS, *INTL_PATHS,
            "/calendar/2000/1", "/p/0", "/old/post-1", "/post/post-2/",
            "/post/post-0?utm_source=home",
        )  # fmt: skip
        return "<title>Home</title>" + "".join(f'<a href="{href}">{href}</a>' for href in hrefs)

    def _blog(self, request: web.Request) -> str:
        posts = "".join(
            f'<a href="/post/post-{n}">post {n}</a>' for n in range(min(20, self.posts))
        )
        return f"<title>Blog</title>{posts}"

    def _post(self, request: web.Request) -> str:
        n = int(request.match_info["n"])
        if n >= self.posts:
            raise web.HTTPNotFound()
        rng = random.Random(n)
        targets = [t for t in (2 * n + 1, 2 * n + 2) if t < self.posts]
        hrefs = [f"/post/post-{t}" for t in targets]
        while len(hrefs) < min(self.links, self.posts):
            hrefs.append(_alias_href(rng, rng.randrange(self.posts)))
        anchors = "".join(f'<li><a href="{href}">more</a></li>' for href in hrefs)
        head = (
            f'<!doctype html><html><head><title>Post {n}</title><link rel="canonical" '
            f'href="/post/post-{n}"></head><body><h1>Post {n}</h1><ul>{anchors}</ul>'
        )
        return head + _filler(self.page_bytes)[: max(0, self.page_bytes - len(head))] + "</body>"

    async def _intl(self, request: web.Request) -> web.Response:
        lang, how = request.match_info["lang"], request.match_info["how"]
        if lang not in ENCODINGS or how not in ("header", "meta", "none"):
            raise web.HTTPNotFound()
        meta = META_TAGS[lang] if how == "meta" else ""
        html = f"<html><head>{meta}<title>{TITLES[lang]}</title></head><body><p>{TEXTS[lang]}</p>"
        content_type = "text/html"
        if how == "header":
            content_type += f"; charset={HEADER_LABELS[lang]}"
        body = (html + "</body></html>").encode(ENCODINGS[lang])
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _flaky(self, request: web.Request) -> web.Response:
        if self.requests[request.path_qs] == 1:
            return web.Response(status=500)
        return web.Response(text="<title>Flaky, then fine</title>", content_type="text/html")

    async def _gzip(self, request: web.Request) -> web.Response:
        body = gzip.compress(b"<title>Compressed</title><p>" + b"gzip " * 2000 + b"</p>")
        headers = {"Content-Type": "text/html", "Content-Encoding": "gzip"}
        return web.Response(body=body, headers=headers)

    async def _hostile_body(self, request: web.Request) -> web.Response:
        return web.Response(body=HOSTILE_BODY, headers={"Content-Type": "text/html"})


def _alias_href(rng: random.Random, n: int) -> str:
    """A link to post ``n`` in one of the forms real sites mix."""
    roll = rng.random()
    if roll < 0.8:
        return f"/post/post-{n}"
    if roll < 0.86:
        return f"/p/{n}"
    if roll < 0.92:
        return f"/old/post-{n}"
    if roll < 0.97:
        return f"/post/post-{n}?utm_source=related"
    return f"/post/post-{n}/"


def _redirect_to(template: str, status: int = 302) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        location = template.format(**request.match_info)
        raise web.HTTPMovedPermanently(location) if status == 301 else web.HTTPFound(location)

    return handle


def _private(request: web.Request) -> str:
    return '<title>private</title><a href="/private/account">account</a><a href="/p/1">p</a>'


def _calendar(request: web.Request) -> str:
    year, month = int(request.match_info["year"]), int(request.match_info["month"])
    later = (year + month // 12, month % 12 + 1)
    return f'<title>{year}-{month}</title><a href="/calendar/{later[0]}/{later[1]}">next</a>'


async def _binary(request: web.Request) -> web.Response:
    body = random.Random(request.path).randbytes(256 * 1024)
    return web.Response(body=body, content_type="application/octet-stream")


async def _broken(request: web.Request) -> web.Response:
    return web.Response(status=500)


def _raw(status: bytes, header: bytes) -> Handler:
    """Answers with bytes aiohttp would refuse to send (they are not UTF-8)."""

    async def handle(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.write(
            b"HTTP/1.1 " + status + b"\r\n" + header + b"\r\nContent-Length: 24\r\n"
            b"Connection: close\r\n\r\n<title>raw bytes</title>"
        )
        request.transport.close()
        return web.Response()  # never sent: the connection is closed

    return handle
