"""Crash-safe resume: kill -9 mid-crawl, run the same command, nothing lost or stored twice."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from examples.crawler.site import RunningSite, SyntheticSite

from .support import run_crawler, start_crawler, stored_pages

CONCURRENCY = 8


def _command(url: str, db: Path) -> list[str]:
    return [
        f"{url}/p/0", "--db", str(db), "--workers", "2", "--window", "50",
        "--concurrency", str(CONCURRENCY), "--per-host", str(CONCURRENCY),
    ]  # fmt: skip


async def _wait_served(site: SyntheticSite, pages: int, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while sum(site.served.values()) < pages:
            await asyncio.sleep(0.01)


async def test_kill_9_then_resume_loses_nothing_and_stores_each_page_once(
    tmp_path: Path,
) -> None:
    site = SyntheticSite(pages=300, links=8, page_bytes=4096, delay_s=0.01)
    db = tmp_path / "crawl.sqlite"
    async with RunningSite(site) as running:
        command = _command(running.url, db)
        first = await start_crawler(*command)
        await _wait_served(site, 120)
        first.kill()
        await first.wait()
        served_before = sum(site.served.values())
        assert served_before < site.pages  # killed mid-crawl
        code, _out, err = await run_crawler(*command)
    assert code == 0, err
    expected = set(site.page_paths())
    assert set(site.served) == expected  # the server saw every page
    pages = stored_pages(db)
    assert len(pages) == len(set(pages)) == site.pages  # each stored exactly once
    refetched = sum(site.served.values()) - site.pages
    # At most the pages handed out but not committed at the kill, which the frontier caps
    # at twice the concurrency however slow the disk.
    assert refetched <= 2 * CONCURRENCY


async def test_sigint_stops_gracefully_and_says_how_to_resume(tmp_path: Path) -> None:
    site = SyntheticSite(pages=200, links=8, page_bytes=4096, delay_s=0.01)
    db = tmp_path / "crawl.sqlite"
    async with RunningSite(site) as running:
        command = _command(running.url, db)
        first = await start_crawler(*command)
        await _wait_served(site, 60)
        first.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            out, _ = await first.communicate()
        assert first.returncode == 130
        assert "to resume, run the same command again" in out.decode()
        stopped_at = len(stored_pages(db))
        assert 0 < stopped_at < site.pages
        code, _, err = await run_crawler(*command)
    assert code == 0, err
    pages = stored_pages(db)
    assert len(pages) == len(set(pages)) == site.pages
    assert sum(site.served.values()) == site.pages  # a graceful stop refetches nothing
