"""robots.txt as RFC 9309 reads it: wildcards, agent groups, and what 4xx and 5xx mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.aiohttp import FetchResult
from examples.crawler.frontier import SKIPPED
from examples.crawler.realsite import RealWorldSite
from examples.crawler.robots import rules_from
from examples.crawler.site import RunningSite

from .support import run_crawler, states, stored_pages

AGENT = "hybrid-crawler/0.1"
HOST = "http://a.test"


def _answer(status: int, body: str = "", error: str | None = None) -> FetchResult:
    return FetchResult(
        HOST + "/robots.txt", HOST + "/robots.txt", status, body=body.encode(), error=error
    )


@pytest.mark.parametrize(
    ("robots", "path", "allowed"),
    [
        ("User-agent: *\nDisallow: /*.php$\n", "/print.php", False),
        ("User-agent: *\nDisallow: /*.php$\n", "/print.php?page=2", True),
        ("User-agent: *\nDisallow: /*?*sessionid=\n", "/s?q=1&sessionid=2", False),
        ("User-agent: *\nDisallow: /a/\nAllow: /a/b\n", "/a/b", True),  # longest match
        ("User-agent:\nDisallow: /\n", "/page", True),  # an empty group names no agent
        ("User-agent: hybrid-crawler\nDisallow: /own\n\nUser-agent: *\nDisallow: /\n", "/x", True),
        (
            "User-agent: hybrid-crawler\nDisallow: /own\n\nUser-agent: *\nDisallow: /\n",
            "/own",
            False,
        ),
    ],
)
def test_rfc_9309_rules(robots: str, path: str, allowed: bool) -> None:
    assert (rules_from(_answer(200, robots)).refusal(HOST + path, AGENT) is None) == allowed


@pytest.mark.parametrize(
    ("answer", "allowed"),
    [
        (_answer(404, error="http 404"), True),
        (_answer(403, error="http 403"), True),
        (_answer(500, error="http 500"), False),
        (_answer(503, error="http 503"), False),
        (_answer(0, error="timeout"), False),
        (_answer(0, error="connection: reset by peer"), False),
        (_answer(0, error="dns: no such host"), True),  # the page fetch says the same
    ],
)
def test_4xx_allows_all_and_5xx_or_unreachable_disallows_all(
    answer: FetchResult, allowed: bool
) -> None:
    assert (rules_from(answer).refusal(HOST + "/page", AGENT) is None) == allowed


@pytest.mark.parametrize(("status", "crawled"), [(503, False), (404, True)])
async def test_a_crawl_stops_at_a_5xx_robots_txt_and_goes_on_past_a_4xx(
    tmp_path: Path, status: int, crawled: bool
) -> None:
    site = RealWorldSite(posts=5, links=2, robots_status=status)
    db = tmp_path / "robots.sqlite"
    async with RunningSite(site) as running:
        code, _, err = await run_crawler(
            f"{running.url}/blog/", "--db", str(db), "--workers", "1", "--max-depth", "1",
            "--retries", "1",
        )  # fmt: skip
    assert code == 0, err
    pages = [path for path in site.requests if path != "/robots.txt"]
    if crawled:
        assert len(stored_pages(db)) > 1
    else:
        assert pages == []  # nothing but robots.txt itself was asked for
        state, _, reason = states(db)[f"{running.url}/blog/"]
        assert state == SKIPPED
        assert reason == "robots.txt unavailable (http 503): all disallowed"
