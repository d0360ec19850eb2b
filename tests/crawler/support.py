"""Run the crawler command as a real subprocess and read its database."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def crawler_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "examples.crawler", *args]


async def start_crawler(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *crawler_command(*args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def run_crawler(*args: str, timeout_s: float = 60.0) -> tuple[int, str, str]:
    """Run the command to its end; return (exit code, stdout, stderr)."""
    process = await start_crawler(*args)
    async with asyncio.timeout(timeout_s):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def states(db: Path) -> dict[str, tuple[int, int, str | None]]:
    """url -> (state, status, reason) for every URL the crawl knows."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT url, state, status, reason FROM urls").fetchall()
    return {url: (state, status, reason) for url, state, status, reason in rows}


def stored_pages(db: Path) -> list[str]:
    """The URL of every stored page row, duplicates included."""
    with sqlite3.connect(db) as connection:
        return [url for (url,) in connection.execute("SELECT url FROM pages")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
