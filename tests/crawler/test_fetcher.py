"""The aiohttp fetcher against a local server: retries, limits, caps and pacing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from adapters.aiohttp import AiohttpFetcher, FetchOptions
from examples.crawler.fetching import Fetcher

Handler = Callable[[web.Request], "asyncio.Future[web.StreamResponse] | object"]


@asynccontextmanager
async def serve(routes: web.RouteTableDef) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def fast_options(**changes: object) -> FetchOptions:
    base: dict[str, object] = {
        "backoff_base_s": 0.01,
        "total_timeout_s": 2.0,
        "read_timeout_s": 2.0,
        "autothrottle": False,
    }
    return FetchOptions(**{**base, **changes})  # type: ignore[arg-type]


async def test_fetcher_implements_the_core_protocol() -> None:
    async with AiohttpFetcher() as fetcher:
        assert isinstance(fetcher, Fetcher)


async def test_429_is_retried_after_the_retry_after_delay() -> None:
    routes = web.RouteTableDef()
    seen_at: list[float] = []

    @routes.get("/busy")
    async def busy(request: web.Request) -> web.Response:
        seen_at.append(time.monotonic())
        if len(seen_at) == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(text="<p>ok</p>", content_type="text/html")

    async with serve(routes) as base, AiohttpFetcher(fast_options()) as fetcher:
        result = await fetcher.fetch(f"{base}/busy")
    assert result.ok
    assert result.attempts == 2
    assert seen_at[1] - seen_at[0] >= 0.95


async def test_a_retry_after_past_the_limit_gives_up_with_the_reason() -> None:
    routes = web.RouteTableDef()

    @routes.get("/later")
    async def later(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "3600"})

    async with serve(routes) as base, AiohttpFetcher(fast_options()) as fetcher:
        result = await fetcher.fetch(f"{base}/later")
    assert result.error == "http 503 (Retry-After 3600 s too long)"


async def test_5xx_is_retried_with_backoff_then_recorded() -> None:
    routes = web.RouteTableDef()
    hits: list[int] = []

    @routes.get("/down")
    async def down(request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(status=502)

    async with serve(routes) as base, AiohttpFetcher(fast_options(retries=3)) as fetcher:
        result = await fetcher.fetch(f"{base}/down")
    assert (result.error, result.status, result.attempts, len(hits)) == ("http 502", 502, 4, 4)


async def test_redirects_are_followed_up_to_the_limit() -> None:
    routes = web.RouteTableDef()

    @routes.get("/hop/{n}")
    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(text="<p>end</p>", content_type="text/html")
        raise web.HTTPFound(f"/hop/{n - 1}")

    async with serve(routes) as base, AiohttpFetcher(fast_options(max_redirects=3)) as fetcher:
        near = await fetcher.fetch(f"{base}/hop/3")
        far = await fetcher.fetch(f"{base}/hop/4")
    assert near.ok
    assert (near.redirects, near.final_url) == (3, f"{base}/hop/0")
    assert far.error == "too many redirects (over 3)"


async def test_an_endless_body_is_cut_at_the_cap_without_buffering_it() -> None:
    routes = web.RouteTableDef()
    sent_bytes: list[int] = [0]

    @routes.get("/endless")
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65536)
                sent_bytes[0] += 65536
        except ConnectionError:
            return response

    @routes.get("/declared")
    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"y" * 300_000, content_type="text/html")

    options = fast_options(max_body_bytes=200_000)
    async with serve(routes) as base, AiohttpFetcher(options) as fetcher:
        endless_result = await fetcher.fetch(f"{base}/endless")
        declared_result = await fetcher.fetch(f"{base}/declared")
    assert endless_result.error == "too large: body over 200000 bytes, cut"
    assert endless_result.body == b""
    assert sent_bytes[0] < 50_000_000  # the server was stopped long before
    assert declared_result.error == "too large: body over 200000 bytes, cut"


async def test_unwanted_types_are_skipped_before_the_body_is_read() -> None:
    routes = web.RouteTableDef()

    @routes.get("/file.pdf")
    async def pdf(request: web.Request) -> web.Response:
        return web.Response(body=b"%PDF" + bytes(1000), content_type="application/pdf")

    async with serve(routes) as base, AiohttpFetcher(fast_options()) as fetcher:
        result = await fetcher.fetch(f"{base}/file.pdf")
    assert result.filtered
    assert result.error == "content-type application/pdf not wanted"
    assert result.body == b""


async def test_per_host_limit_and_fixed_delay_are_respected() -> None:
    routes = web.RouteTableDef()
    active = [0, 0]  # now, most at once
    started_at: list[float] = []

    @routes.get("/slowish/{n}")
    async def slowish(request: web.Request) -> web.Response:
        started_at.append(time.monotonic())
        active[0] += 1
        active[1] = max(active[1], active[0])
        await asyncio.sleep(0.05)
        active[0] -= 1
        return web.Response(text="<p>ok</p>", content_type="text/html")

    async with serve(routes) as base, AiohttpFetcher(fast_options(per_host=2)) as fetcher:
        await asyncio.gather(*(fetcher.fetch(f"{base}/slowish/{n}") for n in range(8)))
        assert active[1] == 2
        host = base.removeprefix("http://")
        fetcher.set_host_delay(host, 0.1)
        started_at.clear()
        await asyncio.gather(*(fetcher.fetch(f"{base}/slowish/{n}") for n in range(4)))
    gaps = [later - earlier for earlier, later in itertools.pairwise(started_at)]
    assert started_at[-1] - started_at[0] >= 0.29  # three 0.1 s delays
    assert min(gaps) >= 0.07  # each gap near 0.1 s, give or take the server's own jitter


async def test_autothrottle_delay_follows_the_measured_latency() -> None:
    routes = web.RouteTableDef()

    @routes.get("/lag")
    async def lag(request: web.Request) -> web.Response:
        await asyncio.sleep(0.1)
        return web.Response(text="<p>ok</p>", content_type="text/html")

    options = fast_options(autothrottle=True, target_concurrency=1.0)
    async with serve(routes) as base, AiohttpFetcher(options) as fetcher:
        for _ in range(3):
            result = await fetcher.fetch(f"{base}/lag")
        latency = fetcher.host_latency_s()[base.removeprefix("http://")]
    # The server sleeps 0.1 s; a loop's timer may wake a hair early (uvloop rounds to ms).
    assert 0.095 <= result.transit_s < 1.0
    assert 0.095 <= latency < 1.0


async def test_dns_failure_and_refused_connection_are_outcomes() -> None:
    async with AiohttpFetcher(fast_options(retries=0)) as fetcher:
        dns = await fetcher.fetch("http://nonexistent.invalid/")
        refused = await fetcher.fetch("http://127.0.0.1:1/")
    assert dns.error is not None
    assert dns.error.startswith("dns: ")
    assert refused.error is not None
    assert refused.error.startswith("connection: ")
