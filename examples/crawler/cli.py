"""Command-line options of ``python -m examples.crawler`` and their validation."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import hybrid

from .urls import SKIPPED_EXTENSIONS, InvalidUrl, Scope, normalise

DEFAULT_DB = "crawl.sqlite"
DEFAULT_DEMO_PORT = 8787  # fixed, so that a stopped demo resumes against the same URLs
# Parsing yields the CPU to the event loop: measured on 2 busy cores, the loop's lag p99 was
# mostly time spent runnable but waiting for a core the workers held, not time in callbacks.
DEFAULT_WORKER_NICE = 10


class UsageError(Exception):
    """Bad input; the message is printed as one line and the exit code is 2."""


@dataclass(frozen=True)
class Config:
    """Everything a crawl run needs, validated."""

    seeds: tuple[str, ...]
    db: Path
    max_depth: int | None
    max_pages: int | None
    concurrency: int
    per_host: int
    workers: int | None
    worker_nice: int
    scope: Scope
    hook: str | None
    user_agent: str
    timeout_s: float
    retries: int
    max_body_bytes: int
    obey_robots: bool
    window: int
    export: str | None
    export_path: Path | None
    proxy: str | None
    headers: tuple[tuple[str, str], ...]
    redis_url: str | None
    redis_prefix: str
    demo: bool
    demo_pages: int
    demo_port: int
    demo_delay_s: float
    stats_json: Path | None
    same_domain: bool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.crawler",
        description="Crawl websites with hybrid: fetching on the event loop, parsing in "
        "worker processes, results in SQLite. Run the same command again to resume.",
    )
    add = parser.add_argument
    add(
        "-V",
        "--version",
        action="version",
        version=f"hybrid-engine {hybrid.__version__}",
        help="print the name and version of the hybrid it runs on, then exit",
    )
    add("seeds", nargs="*", metavar="URL", help="start URLs")
    add("--seeds-file", type=Path, help="a file of start URLs, one per line")
    add("--demo", action="store_true", help="crawl a local synthetic site (no network needed)")
    add("--demo-pages", type=int, default=500, help="pages of the demo site (default 500)")
    add(
        "--demo-port",
        type=int,
        default=DEFAULT_DEMO_PORT,
        help="port of the demo site (default: %(default)s)",
    )
    add(
        "--demo-delay-ms",
        type=float,
        default=5.0,
        help="demo server delay per page, in ms (default: %(default)s)",
    )
    add("--db", type=Path, default=Path(DEFAULT_DB), help=f"SQLite file (default {DEFAULT_DB})")
    add("--max-depth", type=int, help="links followed from a seed at most")
    add("--max-pages", type=int, help="URLs crawled at most (all runs of this db together)")
    add("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    add("--per-host", type=int, default=8, help="requests in flight per host (default 8)")
    add("--workers", type=int, help="parsing processes (default: one per usable CPU)")
    add(
        "--worker-nice",
        type=int,
        default=DEFAULT_WORKER_NICE,
        help="niceness added to the parsing processes, so that the event loop gets a core "
        f"first (default {DEFAULT_WORKER_NICE}; 0 runs them at the crawler's own priority)",
    )
    add("--any-domain", action="store_true", help="follow links to other hosts too")
    add("--allow", action="append", default=[], metavar="REGEX", help="follow only matches")
    add("--deny", action="append", default=[], metavar="REGEX", help="never follow matches")
    add(
        "--skip-extensions",
        metavar="EXT,...",
        help="never request URLs whose path ends in these extensions (default: archives, "
        "images, media, documents, fonts; '' requests everything)",
    )
    add(
        "--ignore-canonical",
        action="store_true",
        help="store each page under the URL it was fetched from, ignoring rel=canonical",
    )
    add("--hook", metavar="MODULE:FUNCTION", help="extraction hook run in the workers")
    add(
        "--user-agent",
        default="hybrid-crawler/0.1",
        help="User-Agent header (default: %(default)s)",
    )
    add("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    add("--retries", type=int, default=2, help="retries of transient failures (default 2)")
    add(
        "--max-body-bytes",
        type=int,
        default=5 * 1024 * 1024,
        help="bodies past this many bytes fail (default: %(default)s)",
    )
    add("--ignore-robots", action="store_true", help="do not read robots.txt")
    add("--window", type=int, default=2000, help="queued URLs held in memory (default 2000)")
    add("--export", choices=("jsonl", "csv"), help="write the pages out at the end")
    add("--export-path", type=Path, help="export file (default: next to the db)")
    add("--proxy", help="proxy URL for every request")
    add("--header", action="append", default=[], metavar="NAME:VALUE", help="extra header")
    add("--redis", metavar="URL", help="share the frontier with other crawlers through Redis")
    add(
        "--redis-prefix",
        default="hybrid:crawl",
        help="prefix of the Redis keys (default: %(default)s)",
    )
    add("--stats-json", type=Path, help="write the final statistics to this file")
    return parser


def parse_config(argv: list[str] | None = None) -> Config:
    """Parse and validate the command line.

    Raises:
        UsageError: with a one-line message naming the bad input.
    """
    args = build_parser().parse_args(argv)
    seeds = _seeds(args)
    _check_positive(args)
    _check_patterns([*args.allow, *args.deny])
    _check_writable(args.db)
    hosts = frozenset(filter(None, (_hostname(url) for url in seeds)))
    return Config(
        seeds=tuple(seeds),
        db=args.db,
        max_depth=args.max_depth,
        max_pages=args.max_pages,
        concurrency=args.concurrency,
        per_host=args.per_host,
        workers=args.workers,
        worker_nice=args.worker_nice,
        scope=Scope(
            domains=frozenset() if args.any_domain else hosts,
            allow=tuple(args.allow),
            deny=tuple(args.deny),
            skip_extensions=_extensions(args.skip_extensions),
            same_host_canonical=not args.ignore_canonical,
        ),
        hook=_check_hook(args.hook),
        user_agent=args.user_agent,
        timeout_s=args.timeout,
        retries=args.retries,
        max_body_bytes=args.max_body_bytes,
        obey_robots=not args.ignore_robots,
        window=args.window,
        export=args.export,
        export_path=args.export_path,
        proxy=args.proxy,
        headers=tuple(_header(h) for h in args.header),
        redis_url=args.redis,
        redis_prefix=args.redis_prefix,
        demo=args.demo,
        demo_pages=args.demo_pages,
        demo_port=args.demo_port,
        demo_delay_s=args.demo_delay_ms / 1000,
        stats_json=args.stats_json,
        same_domain=not args.any_domain,
    )


def demo_seed(port: int) -> str:
    return f"http://127.0.0.1:{port}/p/0"


def _seeds(args: argparse.Namespace) -> list[str]:
    raw: list[str] = list(args.seeds)
    if args.seeds_file is not None:
        try:
            lines = args.seeds_file.read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read seeds file {args.seeds_file}: {exc.strerror}") from None
        raw += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if args.demo:
        raw.append(demo_seed(args.demo_port))
    if not raw:
        raise UsageError("give at least one URL, --seeds-file or --demo")
    try:
        return [normalise(url) for url in raw]
    except InvalidUrl as exc:
        raise UsageError(str(exc)) from None


def _extensions(text: str | None) -> frozenset[str]:
    if text is None:
        return SKIPPED_EXTENSIONS
    return frozenset(part.strip().lstrip(".").lower() for part in text.split(",") if part.strip())


def _check_positive(args: argparse.Namespace) -> None:
    for name in ("concurrency", "per_host", "workers", "max_pages", "window", "demo_pages"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    for name in ("max_depth", "retries", "worker_nice"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, not {value}")
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {args.timeout}")


def _check_patterns(patterns: list[str]) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"bad pattern {pattern!r}: {exc}") from None


def _check_writable(db: Path) -> None:
    directory = db.parent if str(db.parent) else Path(".")
    if db.exists():
        if not os.access(db, os.W_OK):
            raise UsageError(f"cannot write the database {db}: permission denied")
        return
    if not directory.is_dir():
        raise UsageError(f"cannot create the database {db}: no directory {directory}")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"cannot create the database {db}: {directory} is not writable")


def _check_hook(hook: str | None) -> str | None:
    if hook is None:
        return None
    from .hook import load_hook

    try:
        load_hook(hook)
    except (ImportError, ValueError) as exc:
        raise UsageError(f"bad --hook {hook!r}: {exc}") from None
    return hook


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"--header must be NAME:VALUE, not {text!r}")
    return name.strip(), value.strip()


def _hostname(url: str) -> str | None:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname
