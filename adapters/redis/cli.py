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


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="hybrid worker",
        description="Consume jobs from a Redis stream and run them on a local process pool.",
    )
    default = NodeConfig()
    parse.add_argument(
        "--redis",
        default=os.environ.get("HYBRID_REDIS_URL", DEFAULT_URL),
        help="Redis URL (redis://, rediss://, user:password@ for ACLs)",
    )
    parse.add_argument(
        "--import",
        dest="modules",
        action="append",
        required=True,
        help="module whose public functions may run here (repeatable)",
    )
    parse.add_argument("--workers", type=int, default=None, help="local worker processes")
    parse.add_argument(
        "--no-follow-pressure",
        action="store_false",
        dest="follow_pressure",
        help="keep --workers local workers whatever the machine's CPU and memory pressure "
        "(by default the engine gives way to other tenants and to memory pressure)",
    )
    parse.add_argument(
        "--concurrency", type=int, default=default.concurrency, help="stream entries held at once"
    )
    parse.add_argument("--prefix", default=default.prefix, help="the cluster's key prefix")
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
        help="seconds an entry may sit unrenewed before any node claims it",
    )
    parse.add_argument(
        "--beat-interval",
        type=float,
        default=default.beat_interval_s,
        dest="beat_interval_s",
        help="seconds between two reads of the peers' beats (this node beats at the "
        "interval its peers ask for, at most 3 beats a second)",
    )
    parse.add_argument(
        "--dead-after",
        type=float,
        default=default.dead_after_s,
        dest="dead_after_s",
        help="least silence in seconds before a peer is dead",
    )
    parse.add_argument(
        "--max-deliveries",
        type=int,
        default=default.max_deliveries,
        help="dead-letter an entry delivered more often than this",
    )
    parse.add_argument(
        "--max-entry-bytes",
        type=int,
        default=default.max_entry_bytes,
        help="dead-letter entries larger than this",
    )
    parse.add_argument(
        "--drain-timeout",
        type=float,
        default=default.drain_timeout_s,
        dest="drain_timeout_s",
        help="seconds to finish running jobs on SIGTERM before handing them back",
    )
    parse.add_argument(
        "--trim-interval",
        type=float,
        default=default.trim_interval_s,
        dest="trim_interval_s",
        help="seconds between trims of acknowledged entries off the job stream",
    )
    parse.add_argument("--log-level", default="WARNING")
    return parse


def worker_command(argv: list[str]) -> int:
    """Run ``hybrid worker`` with these arguments; the exit code (0 after a drain)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
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
