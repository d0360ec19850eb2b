"""``hybrid worker``: parse the options, run a node until SIGTERM or SIGINT, drain, exit 0."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys

import hybrid

from .codec import secret_from
from .conn import REFUSED_ERRORS, describe_refusal
from .node import NodeConfig, WorkerNode

DEFAULT_URL = "redis://127.0.0.1:6379/0"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="hybrid worker",
        description="Consume jobs from a Redis stream and run them on a local process pool. "
        "Runs until SIGTERM or SIGINT, then finishes (or hands back) its jobs and exits 0.",
        epilog="environment: HYBRID_REDIS_URL is the default of --redis; HYBRID_SECRET is the "
        "cluster's shared HMAC key: when set, every job and result is signed and checked "
        "(clients must use the same). Exit status: 0 after a drain, 1 failure at run time, "
        "2 usage error (bad option, --import that cannot be imported, refused credentials).",
    )
    default = NodeConfig()
    parse.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"hybrid-engine {hybrid.__version__}",
        help="print the distribution's name and version, then exit",
    )
    parse.add_argument(
        "--redis",
        default=os.environ.get("HYBRID_REDIS_URL", DEFAULT_URL),
        help="Redis URL: redis://, rediss://, user:password@ for ACLs "
        f"(default: $HYBRID_REDIS_URL, else {DEFAULT_URL})",
    )
    parse.add_argument(
        "--import",
        dest="modules",
        action="append",
        required=True,
        help="module whose public functions may run here (repeatable)",
    )
    parse.add_argument(
        "--workers", type=int, default=None, help="local worker processes (default: usable CPUs)"
    )
    parse.add_argument(
        "--no-follow-pressure",
        action="store_false",
        dest="follow_pressure",
        help="keep --workers local workers whatever the machine's CPU and memory pressure "
        "(by default the engine gives way to other tenants and to memory pressure)",
    )
    parse.add_argument(
        "--concurrency",
        type=int,
        default=default.concurrency,
        help="stream entries held at once (default: %(default)s)",
    )
    parse.add_argument(
        "--prefix", default=default.prefix, help="the cluster's key prefix (default: %(default)s)"
    )
    parse.add_argument(
        "--queue",
        default=default.queue,
        help="the named queue to serve (RedisEngine.run(..., queue=NAME)); "
        "the default queue when omitted",
    )
    parse.add_argument(
        "--lease",
        type=float,
        default=default.lease_s,
        dest="lease_s",
        help="seconds an entry may sit unrenewed before any node claims it (default: %(default)s)",
    )
    parse.add_argument(
        "--beat-interval",
        type=float,
        default=default.beat_interval_s,
        dest="beat_interval_s",
        help="seconds between two reads of the peers' beats; this node beats at the "
        "interval its peers ask for, at most 3 beats a second (default: %(default)s)",
    )
    parse.add_argument(
        "--dead-after",
        type=float,
        default=default.dead_after_s,
        dest="dead_after_s",
        help="least silence in seconds before a peer is dead (default: %(default)s)",
    )
    parse.add_argument(
        "--max-deliveries",
        type=int,
        default=default.max_deliveries,
        help="dead-letter an entry delivered more often than this (default: %(default)s)",
    )
    parse.add_argument(
        "--max-entry-bytes",
        type=int,
        default=default.max_entry_bytes,
        help="dead-letter entries larger than this many bytes (default: %(default)s)",
    )
    parse.add_argument(
        "--drain-timeout",
        type=float,
        default=default.drain_timeout_s,
        dest="drain_timeout_s",
        help="seconds to finish running jobs on SIGTERM before handing them back"
        " (default: %(default)s)",
    )
    parse.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="WARNING",
        help="least level of the log records printed on stderr (default: %(default)s)",
    )
    parse.add_argument(
        "--trim-interval",
        type=float,
        default=default.trim_interval_s,
        dest="trim_interval_s",
        help="seconds between trims of acknowledged entries off the job stream "
        "(default: %(default)s)",
    )
    return parse


def worker_command(argv: list[str]) -> int:
    """Run ``hybrid worker`` with these arguments; the exit code (0 after a drain)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # so --import finds the project's own modules
    for module in args.modules:
        # A typo in --import should say so in one line, not end in a traceback later.
        try:
            importlib.import_module(module)
        except ImportError as exc:
            print(f"hybrid worker: cannot import --import {module!r}: {exc}", file=sys.stderr)
            return 2
    try:
        secret = secret_from(os.environ.get("HYBRID_SECRET"))
    except ValueError as exc:
        print(f"hybrid worker: {exc}", file=sys.stderr)
        return 2
    config = NodeConfig(
        url=args.redis,
        modules=tuple(args.modules),
        prefix=args.prefix,
        workers=args.workers,
        follow_pressure=args.follow_pressure,
        concurrency=args.concurrency,
        lease_s=args.lease_s,
        beat_interval_s=args.beat_interval_s,
        queue=args.queue,
        dead_after_s=args.dead_after_s,
        max_deliveries=args.max_deliveries,
        max_entry_bytes=args.max_entry_bytes,
        drain_timeout_s=args.drain_timeout_s,
        trim_interval_s=args.trim_interval_s,
        secret=secret,
    )
    try:
        hybrid.run(_serve(config))
    except REFUSED_ERRORS as exc:
        reason = describe_refusal(exc)
        print(f"hybrid worker: Redis refused the credentials in --redis: {reason}", file=sys.stderr)
        return 2
    return 0


async def _serve(config: NodeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    node = WorkerNode(config)
    name = node.name.decode()
    print(f"hybrid worker {name} starting", flush=True)

    def say_ready() -> None:
        print(f"hybrid worker {name} ready ({node.features.current.describe()})", flush=True)

    await node.serve(stop, say_ready)
    counters = " ".join(f"{name}={value}" for name, value in node.counters.items())
    print(f"hybrid worker {name} stopped: {counters}", flush=True)
