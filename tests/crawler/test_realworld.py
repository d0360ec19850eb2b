"""A crawl of a site shaped like the real web: redirects, aliases, charsets, hostile bytes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import pytest_asyncio

from examples.crawler.frontier import ALIAS, DONE, FAILED, SKIPPED
from examples.crawler.realsite import (
    BINARY_LINKS,
    ENCODINGS,
    INTL_PATHS,
    TITLES,
    RealWorldSite,
)
from examples.crawler.site import RunningSite

from .support import run_crawler, states, stored_pages


def _disallowed(path: str) -> bool:
    """What the site's robots.txt disallows, read by hand."""
    return path.startswith("/private/") or "sessionid=" in path or path.endswith(".php")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def crawled(tmp_path_factory: pytest.TempPathFactory) -> tuple[RealWorldSite, str, Path]:
    site = RealWorldSite(posts=60, links=8, page_bytes=2048)
    db = tmp_path_factory.mktemp("realworld") / "real.sqlite"
    async with RunningSite(site) as running:
        code, _, err = await run_crawler(
            f"{running.url}/", "--db", str(db), "--max-depth", "6", "--timeout", "2",
            "--retries", "1", "--workers", "2", "--export", "jsonl",
        )  # fmt: skip
    assert code == 0, err
    assert "Traceback" not in err
    return site, running.url, db


def test_no_disallowed_url_is_requested_at_any_hop(
    crawled: tuple[RealWorldSite, str, Path],
) -> None:
    site, base, db = crawled
    assert [path for path in site.requests if _disallowed(path)] == []
    urls = states(db)
    # The redirects into /private/ were followed up to the hop robots.txt refuses.
    for start in ("/login", "/go/secret"):
        state, _, reason = urls[base + start]
        assert state == SKIPPED
        assert reason is not None
        assert reason.startswith("robots.txt disallows: redirect to"), reason
    assert site.requests["/go/hop"] == 1  # the allowed middle hop, fetched once


def test_every_document_is_stored_once_under_its_canonical_url(
    crawled: tuple[RealWorldSite, str, Path],
) -> None:
    site, base, db = crawled
    pages = stored_pages(db)
    assert len(pages) == len(set(pages))
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT url, title FROM pages").fetchall()
        aliases = dict(connection.execute("SELECT alias, url FROM aliases").fetchall())
    # Apart from the three copies of each page in another encoding, a title is a document.
    titles = [title for url, title in rows if "/intl/" not in url]
    assert len(titles) == len(set(titles))
    assert {base + path for path in site.post_paths()} <= set(pages)
    assert base + "/blog/" in pages
    assert base + "/blog" not in pages
    assert aliases[base + "/blog"] == base + "/blog/"
    assert aliases[base + "/p/0"] == base + "/post/post-0"
    assert aliases[base + "/old/post-1"] == base + "/post/post-1"
    assert aliases[base + "/post/post-2/"] == base + "/post/post-2"
    assert aliases[base + "/post/post-0?utm_source=home"] == base + "/post/post-0"
    urls = states(db)
    assert urls[base + "/p/0"][0] == ALIAS
    assert urls[base + "/post/post-0"][0] == DONE
    exported = [json.loads(line) for line in db.with_suffix(".jsonl").read_text().splitlines()]
    blog = next(record for record in exported if record["url"] == base + "/blog/")
    assert blog["aliases"] == [base + "/blog"]


def test_pages_in_legacy_encodings_are_stored_as_served(
    crawled: tuple[RealWorldSite, str, Path],
) -> None:
    _, base, db = crawled
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT url, title, text, encoding FROM pages").fetchall()
    by_url = {url: (title, text, encoding) for url, title, text, encoding in rows}
    for path in INTL_PATHS:
        lang = path.split("/")[2]
        title, text, encoding = by_url[base + path]
        assert title == TITLES[lang], (path, encoding)
        assert "\ufffd" not in text, path
        assert b"".decode(encoding) == ""
        assert TITLES[lang].encode(ENCODINGS[lang]).decode(encoding) == TITLES[lang], path


def test_hostile_headers_and_bodies_end_as_outcomes_and_the_crawl_goes_on(
    crawled: tuple[RealWorldSite, str, Path],
) -> None:
    _, base, db = crawled
    urls = states(db)
    state, _, reason = urls[base + "/hostile/location"]
    assert state == FAILED
    assert reason is not None
    assert reason.startswith("redirect to unsupported url ftp://x/"), reason
    assert urls[base + "/hostile/charset"][0] == DONE
    assert urls[base + "/hostile/body"][0] == DONE
    with sqlite3.connect(db) as connection:
        (title,) = connection.execute(
            "SELECT title FROM pages WHERE url = ?", (base + "/hostile/body",)
        ).fetchone()
    assert title.startswith("hostile")
    # Everything linked after the hostile pages was still crawled.
    assert urls[base + "/gz"][0] == DONE
    assert urls[base + "/flaky"][0] == DONE  # a one-off 500, retried
    assert urls[base + "/broken"][:2] == (FAILED, 500)
    assert urls[base + "/missing"][:2] == (FAILED, 404)
    calendar = [url for url in urls if "/calendar/" in url]
    assert 1 <= len(calendar) <= 7  # the endless calendar stops at --max-depth


def test_binary_links_are_not_requested(
    crawled: tuple[RealWorldSite, str, Path],
) -> None:
    site, base, db = crawled
    assert [path for path in BINARY_LINKS if site.requests[path]] == []
    urls = states(db)
    for path in BINARY_LINKS:
        state, _, reason = urls[base + path]
        assert state == SKIPPED
        assert reason is not None
        assert reason.startswith("extension ."), reason
    # Without an extension to go by, the header stops it before the body is read.
    assert urls[base + "/download/report"][0] == SKIPPED
