"""Run the example service: ``python -m examples.webapp [--mode hybrid] [--port 8080]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

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


def main() -> int:
    """Parse the command line and serve; the exit status (1 when the port cannot be bound)."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.webapp",
        description="Serve the example aiohttp app: GET /cpu runs about 20 ms of pure Python "
        "(where depends on --mode), GET /health answers at once, GET /metrics serves "
        "Prometheus metrics (hybrid mode). Stops cleanly on SIGINT or SIGTERM.",
    )
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"hybrid-engine {hybrid.__version__}",
        help="print the name and version of the hybrid it runs on, then exit",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="TCP port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="hybrid",
        help="where /cpu runs: on the event loop (inline), in a stdlib ProcessPoolExecutor "
        "(executor) or in hybrid's workers (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: usable CPUs)"
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=None,
        help="lower the workers' CPU priority by this (default: 10 with hybrid, 0 otherwise)",
    )
    parser.add_argument("--no-metrics", action="store_true", help="serve no /metrics")
    parser.add_argument("--asyncio", action="store_true", help="run on asyncio's loop, not uvloop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
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
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port is taken, or the address is not this host's
        print(f"{parser.prog}: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
