"""The crawler command: the offline demo, and one-line errors for bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from .support import free_port, run_crawler, stored_pages


async def test_demo_crawls_the_local_site_and_exports(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite"
    code, out, err = await run_crawler(
        "--demo", "--demo-pages", "120", "--demo-port", str(free_port()),
        "--db", str(db), "--workers", "2", "--export", "csv",
    )  # fmt: skip
    assert code == 0, err
    assert "done 120" in out
    assert len(set(stored_pages(db))) == 120
    with open(db.with_suffix(".csv"), newline="") as exported:
        assert len(list(csv.DictReader(exported))) == 120


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://example.com/"], "only http and https"),
        (["http://"], "no host"),
        (["http://127.0.0.1:1/", "--db", "/nonexistent-dir/x.sqlite"], "no directory"),
        (["http://127.0.0.1:1/", "--deny", "(unclosed"], "bad pattern"),
        (["http://127.0.0.1:1/", "--hook", "no_such_module:fn"], "bad --hook"),
        (["http://127.0.0.1:1/", "--concurrency", "0"], "--concurrency must be at least 1"),
        ([], "give at least one URL"),
    ],
)
async def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    if "--db" not in args:
        args = [*args, "--db", str(tmp_path / "x.sqlite")]
    code, _out, err = await run_crawler(*args)
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: ")
    assert message in err


async def test_a_dead_redis_is_one_clear_line(tmp_path: Path) -> None:
    db = str(tmp_path / "x.sqlite")
    code, _out, err = await run_crawler(
        "http://127.0.0.1:1/", "--redis", "redis://127.0.0.1:1/0", "--db", db
    )
    assert code == 1
    assert err.count("\n") == 1, err
    assert err.startswith("error: cannot use Redis at redis://127.0.0.1:1/0")
