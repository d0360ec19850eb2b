"""The example service as a FastAPI app: ``python -m examples.webapp.fastapi_app``.

The same endpoints as the aiohttp app next to it: ``GET /cpu`` (about 20 ms of pure Python
per call), ``GET /health`` and, in hybrid mode with metrics on, ``GET /metrics``.
``--mode executor`` runs the call with a plain ``loop.run_in_executor`` on a stdlib
``ProcessPoolExecutor`` instead, for comparison (see ``benchmarks/bench_fastapi.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from typing import Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

import hybrid
from adapters import starlette as hybrid_asgi

from .work import DEFAULT_ROUNDS, crunch

Mode = Literal["executor", "hybrid"]
MODES: tuple[Mode, ...] = ("executor", "hybrid")
CPU_TIMEOUT_S = 5.0  # a /cpu call this slow is answered 504 and its worker replaced


def build_app(
    mode: Mode = "hybrid", *, metrics: bool = True, workers: int | None = None
) -> FastAPI:
    """The service; ``mode`` says where ``/cpu`` runs its call.

    Args:
        mode: ``"hybrid"`` (``adapters.starlette.offload``) or ``"executor"`` (a plain
            ``run_in_executor`` on a ``ProcessPoolExecutor``).
        metrics: serve ``/metrics`` (hybrid mode only).
        workers: worker processes; None: hybrid's usable CPUs, the executor's default.
    """
    if mode == "hybrid":
        app = FastAPI()
        hybrid_asgi.setup(app, workers=workers, metrics=metrics, max_queued=1024)

        @app.get("/cpu")
        async def cpu(request: Request, rounds: int = DEFAULT_ROUNDS) -> dict[str, int]:
            total = await hybrid_asgi.offload(request, crunch, rounds, timeout=CPU_TIMEOUT_S)
            return {"total": total}

    elif mode == "executor":
        app = FastAPI(lifespan=lambda app: _executor_life(app, workers))

        @app.get("/cpu")
        async def cpu(request: Request, rounds: int = DEFAULT_ROUNDS) -> dict[str, int]:
            loop = asyncio.get_running_loop()
            total = await loop.run_in_executor(request.app.state.executor, crunch, rounds)
            return {"total": total}

    else:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    app.add_api_route("/health", health, response_class=PlainTextResponse)
    return app


async def health() -> str:
    return "ok"


@contextlib.asynccontextmanager
async def _executor_life(app: FastAPI, workers: int | None) -> AsyncIterator[None]:
    with ProcessPoolExecutor(max_workers=workers) as executor:
        app.state.executor = executor
        yield


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until SIGINT or SIGTERM; the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.webapp.fastapi_app",
        description="Serve the example FastAPI app with uvicorn: GET /cpu runs about 20 ms "
        "of pure Python (where depends on --mode), GET /health answers at once, GET /metrics "
        "serves Prometheus metrics (hybrid mode).",
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
        help="where /cpu runs: a stdlib ProcessPoolExecutor through run_in_executor "
        "(executor) or hybrid's workers (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: usable CPUs)"
    )
    parser.add_argument("--no-metrics", action="store_true", help="serve no /metrics")
    args = parser.parse_args(argv)
    app = build_app(args.mode, metrics=not args.no_metrics, workers=args.workers)
    print(f"serving {args.mode} on http://{args.host}:{args.port} (GET /cpu, /health)", flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit:  # uvicorn's way out when it cannot bind; it logged why on stderr
        print(f"{parser.prog}: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
