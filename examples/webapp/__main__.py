"""Run the example service: ``python -m examples.webapp [--mode hybrid] [--port 8080]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from aiohttp import web

import hybrid

from .app import MODES, Mode, build_app


async def serve(
    mode: Mode,
    host: str,
    port: int,
    metrics: bool,
    workers: int | None,
    worker_nice: int | None,
) -> None:
    """Serve until SIGINT or SIGTERM, then close the app (and its engine) cleanly."""
    app = build_app(mode, metrics=metrics, workers=workers, worker_nice=worker_nice)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        print(f"serving {mode} on http://{host}:{port} (GET /cpu, /health)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.webapp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--mode", choices=MODES, default="hybrid")
    parser.add_argument("--workers", type=int, default=None, help="default: usable CPUs")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=None,
        help="lower the workers' CPU priority by this (default: 10 with hybrid, 0 otherwise)",
    )
    parser.add_argument("--no-metrics", action="store_true", help="serve no /metrics")
    parser.add_argument("--asyncio", action="store_true", help="asyncio's loop, not uvloop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        hybrid.run(
            serve(
                args.mode,
                args.host,
                args.port,
                not args.no_metrics,
                args.workers,
                args.worker_nice,
            ),
            use_uvloop=not args.asyncio,
        )


if __name__ == "__main__":
    main()
