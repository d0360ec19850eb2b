"""Two crawlers share one Redis frontier; one is killed and the other takes over its URLs."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from examples.crawler.realsite import RealWorldSite
from examples.crawler.site import RunningSite, SyntheticSite

from .support import start_crawler, stored_pages


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = f"test:crawl:{uuid.uuid4().hex}"
    yield name
    client = aioredis.Redis.from_url(redis_url)
    await client.delete(*(f"{name}:{key}" for key in ("stream", "seen", "results", "handed-out")))
    await client.aclose()


async def test_a_killed_crawlers_urls_are_taken_over(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    site = SyntheticSite(pages=200, links=8, page_bytes=4096, delay_s=0.02)
    async with RunningSite(site) as running:

        def command(name: str) -> list[str]:
            return [
                f"{running.url}/p/0", "--db", str(tmp_path / f"{name}.sqlite"),
                "--redis", redis_url, "--redis-prefix", prefix, "--workers", "1",
                "--concurrency", "4", "--per-host", "8",
            ]  # fmt: skip

        doomed = await start_crawler(*command("doomed"))
        survivor = await start_crawler(*command("survivor"))
        async with asyncio.timeout(30):
            while sum(site.served.values()) < 60:
                await asyncio.sleep(0.01)
        doomed.kill()
        await doomed.wait()
        async with asyncio.timeout(60):
            _, err = await survivor.communicate()
        assert survivor.returncode == 0, err.decode()
    assert set(site.served) == set(site.page_paths())
    client = aioredis.Redis.from_url(redis_url)
    results = await client.hlen(f"{prefix}:results")
    await client.aclose()
    assert results == site.pages  # one result per URL
    pages = stored_pages(tmp_path / "doomed.sqlite") + stored_pages(tmp_path / "survivor.sqlite")
    # A page is committed locally before Redis hears it is done: none is lost, and only
    # pages the killed crawler had committed but not yet reported are stored twice.
    assert set(pages) == {f"{running.url}{path}" for path in site.page_paths()}
    assert len(pages) - len(set(pages)) <= 4
    refetched = sum(site.served.values()) - site.pages
    assert refetched <= 8 + 4  # at most what the dead crawler held
    assert "is dead: took over" in err.decode()  # judged by the detector, not a fixed idle
    with sqlite3.connect(tmp_path / "survivor.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM pages").fetchone()[0] > 0


async def test_crawlers_sharing_a_frontier_store_each_document_once_across_aliases(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    site = RealWorldSite(posts=40, links=6, page_bytes=1024)
    async with RunningSite(site) as running:

        def command(name: str) -> list[str]:
            return [
                f"{running.url}/", "--db", str(tmp_path / f"{name}.sqlite"), "--redis",
                redis_url, "--redis-prefix", prefix, "--workers", "1", "--max-depth", "6",
                "--retries", "1", "--timeout", "2",
            ]  # fmt: skip

        crawlers = [await start_crawler(*command(name)) for name in ("one", "two")]
        async with asyncio.timeout(60):
            for crawler in crawlers:
                _, err = await crawler.communicate()
                assert crawler.returncode == 0, err.decode()
    pages = stored_pages(tmp_path / "one.sqlite") + stored_pages(tmp_path / "two.sqlite")
    assert len(pages) == len(set(pages))  # /blog and /blog/, /p/3 and its post: one copy
    assert {running.url + path for path in site.post_paths()} <= set(pages)
    assert not [path for path in site.requests if path.startswith("/private/")]
