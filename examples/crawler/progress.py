"""Live progress: a rich panel on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

import hybrid

from .crawl import CrawlStats

PLAIN_INTERVAL_S = 2.0  # between two progress lines when not on a terminal
LIVE_INTERVAL_S = 0.25  # between two refreshes of the rich panel
HOSTS_SHOWN = 5


def describe(
    stats: CrawlStats,
    queued: int,
    engine: hybrid.Engine,
    latency_s: Mapping[str, float],
) -> str:
    """One line: pages done/failed/skipped/queued, rate, in flight, worker use."""
    engine_stats = engine.stats()
    outcomes = stats.outcomes
    hosts = ", ".join(
        f"{host} {seconds * 1000:.0f} ms"
        for host, seconds in sorted(latency_s.items())[:HOSTS_SHOWN]
    )
    return (
        f"done {outcomes['done']}  failed {outcomes['failed']}  skipped {outcomes['skipped']}"
        f"  queued(mem) {queued}  in flight {stats.in_flight}  {stats.pages_per_s():.0f} pages/s"
        f"  workers busy {engine_stats.busy}/{engine_stats.workers}"
        + (f"  latency {hosts}" if hosts else "")
    )


async def show_progress(line: Callable[[], str], stream: TextIO = sys.stderr) -> None:
    """Refresh the progress display until cancelled."""
    if stream.isatty():
        await _show_live(line, stream)
    else:
        while True:
            await asyncio.sleep(PLAIN_INTERVAL_S)
            print(line(), file=stream, flush=True)


async def _show_live(line: Callable[[], str], stream: TextIO) -> None:
    # Refreshed from the loop, not by a rich thread of its own that would contend for the GIL.
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(file=stream)
    with (
        Live(Text(line()), console=console, auto_refresh=False, transient=True) as live,
        contextlib.suppress(asyncio.CancelledError),
    ):
        while True:
            await asyncio.sleep(LIVE_INTERVAL_S)
            live.update(Text(line()), refresh=True)
