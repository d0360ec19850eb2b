"""How the crawler sets up its parsing processes: priority and memory settings."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from examples.crawler.cli import DEFAULT_WORKER_NICE
from examples.crawler.site import RunningSite, SyntheticSite

from .support import run_crawler


async def crawl_with_hook(tmp_path: Path, hook: str, *args: str) -> list[dict[str, object]]:
    """Crawl a small local site with ``hook``; return what it extracted on every page."""
    site = SyntheticSite(pages=20, links=3, page_bytes=2048)
    db = tmp_path / "workers.sqlite"
    async with RunningSite(site) as running:
        code, _out, err = await run_crawler(
            f"{running.url}/p/0", "--db", str(db), "--ignore-robots", "--workers", "2",
            "--hook", f"tests.crawler.hooks:{hook}", *args,
        )  # fmt: skip
    assert code == 0, err
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT extra FROM pages").fetchall()
    assert len(rows) == 20
    return [json.loads(extra) for (extra,) in rows]


@pytest.mark.parametrize(
    ("args", "added"), [((), DEFAULT_WORKER_NICE), (("--worker-nice", "0"), 0)]
)
async def test_workers_run_niced_so_the_loop_gets_a_core_first(
    tmp_path: Path, args: tuple[str, ...], added: int
) -> None:
    extras = await crawl_with_hook(tmp_path, "niceness", *args)
    expected = min(19, os.nice(0) + added)
    assert {extra["nice"] for extra in extras} == {expected}
    assert os.getpid() not in {extra["pid"] for extra in extras}
