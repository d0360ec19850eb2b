"""A crawl of a site full of traps: every bad URL ends with a reason and the crawl goes on."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

from examples.crawler.frontier import DONE, FAILED, SKIPPED
from examples.crawler.site import RunningSite, SyntheticSite

from .support import run_crawler, states, stored_pages

ROBOTS = "User-agent: *\nDisallow: /private/\nCrawl-delay: 0.001\n"


async def test_every_trap_is_recorded_with_its_reason(tmp_path: Path) -> None:
    site = SyntheticSite(pages=40, links=5, page_bytes=2048, traps=True, robots_txt=ROBOTS)
    db = tmp_path / "traps.sqlite"
    async with RunningSite(site) as running:
        code, out, err = await run_crawler(
            f"{running.url}/p/0",
            "--db", str(db), "--any-domain", "--max-depth", "4", "--timeout", "1",
            "--retries", "1", "--max-body-bytes", "1000000", "--workers", "2",
            "--hook", "tests.crawler.hooks:word_count", "--export", "jsonl",
        )  # fmt: skip
    assert code == 0, err
    urls = states(db)
    base = running.url

    def outcome(path: str) -> tuple[int, str]:
        state, _, reason = urls[path if path.startswith("http") else base + path]
        return state, reason or ""

    assert outcome("/trap/loop/a") == (FAILED, "redirect loop")
    assert outcome("/trap/huge")[1].startswith("too large")
    assert outcome("/trap/slow") == (FAILED, "timeout")
    assert outcome("/trap/busy")[0] == DONE  # 429 + Retry-After, then served
    assert outcome("/trap/binary") == (FAILED, "binary body served as HTML")
    assert outcome("/trap/malformed")[0] == DONE
    assert outcome("/trap/image") == (SKIPPED, "content-type image/png not wanted")
    assert outcome("/trap/missing") == (FAILED, "http 404")
    assert outcome("/private/secret") == (SKIPPED, "robots.txt disallows")
    assert site.served["/private/secret"] == 0
    assert outcome("http://nonexistent.invalid/")[1].startswith("dns")
    assert outcome("http://[broken/")[0] == FAILED
    assert "invalid URL" in outcome("http://[broken/")[1]
    # <base href> resolves relative links; rel=nofollow is not followed; canonical is.
    assert outcome("/base/target")[0] == DONE
    assert outcome("/canonical/target")[0] == DONE
    assert base + "/nofollow/target" not in urls
    # The endless calendar stops at --max-depth.
    calendar = [url for url in urls if "/trap/calendar/" in url]
    assert 1 <= len(calendar) <= 4
    # Every regular page is stored exactly once, with the hook's extraction.
    pages = stored_pages(db)
    assert sorted(pages) == sorted(set(pages))
    assert {f"{base}{path}" for path in site.page_paths()} <= set(pages)
    exported = [json.loads(line) for line in db.with_suffix(".jsonl").read_text().splitlines()]
    assert len(exported) == len(pages)
    first = next(row for row in exported if row["url"] == f"{base}/p/0")
    assert first["title"] == "Page 0"
    assert first["extra"]["words"] > 100
    assert first["extra"]["pid"] != __import__("os").getpid()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "done" in out


async def test_crawl_delay_spaces_requests_to_the_host(tmp_path: Path) -> None:
    # The gaps are timed where the test's site serves, in a process that a loaded host (the
    # suite runs in parallel) may stall for a few hundred ms; the delay is set well above the
    # gap asserted so such a stall cannot close it, while no delay at all would give ms.
    site = SyntheticSite(pages=5, links=2, robots_txt="User-agent: *\nCrawl-delay: 0.5\n")
    async with RunningSite(site) as running:
        code, _, err = await run_crawler(
            f"{running.url}/p/0", "--db", str(tmp_path / "d.sqlite"), "--workers", "1"
        )
    assert code == 0, err
    times = site.served_at
    assert len(times) == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.15


async def test_garbage_robots_txt_allows_the_crawl(tmp_path: Path) -> None:
    garbage = "\x00\x01{{{ not robots\n<html><body>Disallow /p/</body>\nUser-agent\n:::\n"
    site = SyntheticSite(pages=20, links=3, robots_txt=garbage)
    db = tmp_path / "g.sqlite"
    async with RunningSite(site) as running:
        code, _, err = await run_crawler(f"{running.url}/p/0", "--db", str(db), "--workers", "1")
    assert code == 0, err
    assert len(stored_pages(db)) == 20
