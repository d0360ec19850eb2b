"""One crawler run: wires the site (demo), engine, store, fetcher, frontier and display."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import hybrid
from adapters.aiohttp import AiohttpFetcher, FetchOptions
from adapters.sqlite import SqliteStore, StoreFailed
from hybrid.lag import LoopLagWatch

from .cli import Config
from .crawl import Crawl, CrawlSettings, CrawlStats
from .dispatch import ParseDispatcher
from .export import export_pages
from .frontier import SCHEMA, SqliteFrontier, counts
from .progress import describe, show_progress
from .robots import RobotsCache

STOP_GRACE_S = 15.0  # time the pages in flight get to finish after SIGINT/SIGTERM
LAG_SAMPLES_KEPT = 100_000
WRITE_LINGER_S = 0.02  # the store gathers this long: fewer, larger transactions


async def run(config: Config, argv: list[str]) -> int:
    """Crawl as configured; return the process exit code."""
    # What is imported by now lives as long as the process: full collections skip it.
    # Measured on the loop, a generation-2 collection took 20-30 ms, and about 5 ms after.
    gc.freeze()
    async with _demo_site(config):
        store = await _open_store(config)
        try:
            return await _crawl(config, store, argv)
        except Exception as exc:
            failure = _store_failure(exc)
            if failure is None:
                raise
            print(f"error: the crawl stopped: {failure}", file=sys.stderr)
            return 1
        finally:
            await store.close()


def _store_failure(exc: BaseException) -> StoreFailed | None:
    """The store failure inside ``exc`` (the fetch tasks' group wraps it), if any."""
    if isinstance(exc, StoreFailed):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _store_failure(inner)) is not None:
                return found
    return None


@contextlib.asynccontextmanager
async def _demo_site(config: Config) -> AsyncIterator[None]:
    if not config.demo:
        yield
        return
    from .site import RunningSite, SyntheticSite  # the server side of aiohttp: demo only

    site = SyntheticSite(pages=config.demo_pages, delay_s=config.demo_delay_s, page_bytes=16_384)
    try:
        async with RunningSite(site, port=config.demo_port) as running:
            print(f"demo site: {site.pages} pages on {running.url}", file=sys.stderr)
            yield
    except OSError as exc:
        message = f"error: cannot start the demo site on port {config.demo_port}: {exc}"
        raise SystemExit(message) from None


async def _open_store(config: Config) -> SqliteStore:
    try:
        return await SqliteStore.open(config.db, SCHEMA, linger_s=WRITE_LINGER_S)
    except Exception as exc:
        raise SystemExit(f"error: cannot open the database {config.db}: {exc}") from None


async def _crawl(config: Config, store: SqliteStore, argv: list[str]) -> int:
    options = FetchOptions(
        concurrency=config.concurrency,
        per_host=config.per_host,
        total_timeout_s=config.timeout_s,
        read_timeout_s=config.timeout_s,
        connect_timeout_s=min(10.0, config.timeout_s),
        retries=config.retries,
        max_body_bytes=config.max_body_bytes,
        user_agent=config.user_agent,
        headers=dict(config.headers),
        proxy=config.proxy,
    )
    lag_samples: list[float] = []
    async with (
        # Spawned workers: no fork server process held for the whole crawl. Pages are far
        # below the size where shared memory pays: no per-call scan for it.
        hybrid.Engine(
            workers=config.workers,
            nice=config.worker_nice,
            start_method="spawn",
            share_threshold_bytes=None,
        ) as engine,
        AiohttpFetcher(options) as fetcher,
        AiohttpFetcher(replace(options, content_types=frozenset(), retries=1)) as robots_fetcher,
        LoopLagWatch(interval_s=0.01, warn_after_s=1.0, on_sample=_keep(lag_samples)),
    ):
        frontier = await _make_frontier(config, store)
        robots = RobotsCache(robots_fetcher, fetcher, config.user_agent, obey=config.obey_robots)
        settings = CrawlSettings(config.concurrency, config.max_depth, config.scope)
        parser = ParseDispatcher(engine, config.scope, config.hook)
        crawl = Crawl(settings, frontier, fetcher, robots, parser)
        stopped_by = _handle_signals(crawl)
        line = lambda: describe(  # noqa: E731
            crawl.stats, frontier.queued_in_memory(), engine, fetcher.host_latency_s()
        )
        display = asyncio.create_task(show_progress(line))
        try:
            async with parser:
                await _run_until_stopped(crawl, stopped_by)
        finally:
            display.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await display
            _restore_signals()
        await store.flush()
        summary = await _summary(config, store, crawl.stats, lag_samples, engine)
    return _finish(config, summary, stopped_by, argv)


async def _make_frontier(config: Config, store: SqliteStore) -> Any:
    if config.redis_url:
        from .distributed import RedisFrontier

        return await RedisFrontier.open(config, store)
    frontier = SqliteFrontier(
        store,
        window=config.window,
        max_pages=config.max_pages,
        max_uncommitted=2 * config.concurrency,
    )
    await frontier.start(config.seeds)
    return frontier


async def _run_until_stopped(crawl: Crawl, stopped_by: list[str]) -> None:
    task = asyncio.create_task(crawl.run())
    while not task.done():
        await asyncio.wait([task], timeout=0.2)
        if stopped_by and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
            task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _handle_signals(crawl: Crawl) -> list[str]:
    loop = asyncio.get_running_loop()
    stopped_by: list[str] = []

    def stop(name: str) -> None:
        stopped_by.append(name)
        crawl.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signal.Signals(signum).name)
    return stopped_by


def _restore_signals() -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)


def _keep(samples: list[float]) -> Any:
    def keep(lag_s: float) -> None:
        if len(samples) < LAG_SAMPLES_KEPT:
            samples.append(lag_s)

    return keep


async def _summary(
    config: Config,
    store: SqliteStore,
    stats: CrawlStats,
    lag_samples: list[float],
    engine: hybrid.Engine,
) -> dict[str, Any]:
    elapsed_s = time.monotonic() - stats.started_at
    totals = await counts(store)
    stored = (await store.read("SELECT count(*) FROM pages"))[0][0]
    return {
        "this_run": dict(stats.outcomes),
        "elapsed_s": round(elapsed_s, 3),
        "pages_per_s": round(stats.finished / elapsed_s, 1) if elapsed_s else 0.0,
        "db_states": totals,
        "pages_stored": stored,
        "fetch_p50_ms": _percentile_ms(stats.transit_s, 0.50),
        "fetch_p95_ms": _percentile_ms(stats.transit_s, 0.95),
        "loop_lag_p99_ms": _percentile_ms(lag_samples, 0.99),
        "top_reasons": dict(stats.reasons.most_common(8)),
        "parse_tasks": engine.stats().completed,
        "db": str(config.db),
    }


def _percentile_ms(samples: Sequence[float], fraction: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2)


def _finish(config: Config, summary: dict[str, Any], stopped_by: list[str], argv: list[str]) -> int:
    if config.export:
        out = config.export_path or config.db.with_suffix(f".{config.export}")
        summary["exported"] = export_pages(config.db, out, config.export)
        summary["export_path"] = str(out)
    if config.stats_json:
        config.stats_json.write_text(json.dumps(summary, indent=2))
    this_run = summary["this_run"]
    print(
        f"crawled {sum(this_run.values())} URLs in {summary['elapsed_s']:.1f} s "
        f"({summary['pages_per_s']} /s): done {this_run.get('done', 0)}, "
        f"failed {this_run.get('failed', 0)}, skipped {this_run.get('skipped', 0)}, "
        f"aliases {this_run.get('alias', 0)}"
    )
    print(
        f"database {config.db}: {summary['pages_stored']} pages stored, "
        f"states {summary['db_states']}"
    )
    print(
        f"fetch latency p50 {summary['fetch_p50_ms']} ms, p95 {summary['fetch_p95_ms']} ms; "
        f"loop lag p99 {summary['loop_lag_p99_ms']} ms"
    )
    if summary["top_reasons"]:
        print("reasons: " + ", ".join(f"{k} x{v}" for k, v in summary["top_reasons"].items()))
    if "exported" in summary:
        print(f"exported {summary['exported']} pages to {summary['export_path']}")
    if stopped_by:
        command = shlex.join([sys.executable, "-m", "examples.crawler", *argv])
        print(f"stopped by {stopped_by[0]}; to resume, run the same command again:\n  {command}")
        return 130 if stopped_by[0] == "SIGINT" else 143
    return 0
