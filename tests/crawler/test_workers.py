"""How the crawler sets up its parsing processes: priority and memory settings."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from examples.crawler.cli import DEFAULT_WORKER_NICE
from examples.crawler.memory import SETTINGS
from examples.crawler.site import RunningSite, SyntheticSite

from .support import ROOT, free_port, run_crawler


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


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc settings")
@pytest.mark.parametrize(
    ("environment", "in_heap"),
    [({}, False), ({"MALLOC_MMAP_THRESHOLD_": str(2**22)}, True)],
)
async def test_workers_give_large_blocks_their_own_mapping_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], in_heap: bool
) -> None:
    for _, name, _ in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    extras = await crawl_with_hook(tmp_path, "block_placement")
    assert {extra["in_heap"] for extra in extras} == {in_heap}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc settings")
@pytest.mark.parametrize(("tuned", "in_heap"), [(False, True), (True, False)])
def test_the_parent_gives_large_blocks_their_own_mapping_once_tuned(
    tuned: bool, in_heap: bool
) -> None:
    check = (
        "from examples.crawler.memory import tune_malloc\n"
        "from tests.crawler.hooks import large_block_in_heap\n"
        f"assert not {tuned} or tune_malloc()\n"
        "print(large_block_in_heap())"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, env={**environment, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.split() == [str(in_heap)]


async def test_workers_do_not_import_the_event_loop_machinery(tmp_path: Path) -> None:
    # Unpickling the parse function once imported the dispatcher, and with it asyncio and
    # ssl: about 6 MB of resident memory in every worker.
    extras = await crawl_with_hook(tmp_path, "event_loop_modules")
    assert [extra["imported"] for extra in extras] == [[]] * len(extras)


def test_the_parent_leaves_what_it_imported_out_of_full_collections(tmp_path: Path) -> None:
    # A generation-2 collection over every imported object stalled the loop for 20-30 ms.
    crawl = (
        "import gc, sys\n"
        "from examples.crawler.__main__ import main\n"
        f"code = main(['--demo', '--demo-pages', '5', '--demo-port', '{free_port()}',"
        f" '--db', {str(tmp_path / 'gc.sqlite')!r}, '--workers', '1'])\n"
        "print(code, gc.get_freeze_count() > 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", crawl], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.split()[-2:] == ["0", "True"]
