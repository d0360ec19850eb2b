"""The example service: one CPU-heavy endpoint and a health check, in three modes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Literal

from aiohttp import web

from adapters import aiohttp_web

from .work import DEFAULT_ROUNDS, crunch

Mode = Literal["inline", "executor", "hybrid"]
MODES: tuple[Mode, ...] = ("inline", "executor", "hybrid")
EXECUTOR_KEY = web.AppKey("executor", ProcessPoolExecutor)
CPU_TIMEOUT_S = 5.0  # a /cpu call this slow is answered 504 and its worker replaced


def build_app(
    mode: Mode = "hybrid",
    *,
    metrics: bool = True,
    workers: int | None = None,
    worker_nice: int | None = None,
) -> web.Application:
    """The service; ``mode`` says where ``/cpu`` runs its call.

    Args:
        metrics: serve ``/metrics`` (hybrid mode only).
        workers: worker processes; None: hybrid's usable CPUs, the executor's default.
        worker_nice: raise the workers' nice value by this much, so that on a busy
            machine the process answering requests gets a CPU before the workers do;
            None: hybrid's default for web apps (``aiohttp_web.WORKER_NICE``), 0 for
            the executor.
    """
    app = web.Application()
    app.router.add_get("/health", health)
    if mode == "hybrid":
        priority: dict[str, Any] = {} if worker_nice is None else {"nice": worker_nice}
        aiohttp_web.setup(app, workers=workers, metrics=metrics, max_queued=1024, **priority)
        app.router.add_get("/cpu", cpu_hybrid)
    elif mode == "executor":
        lowered: dict[str, Any] = (
            {"initializer": os.nice, "initargs": (worker_nice,)} if worker_nice else {}
        )
        app.cleanup_ctx.append(lambda app: _executor_life(app, workers, lowered))
        app.router.add_get("/cpu", cpu_executor)
    elif mode == "inline":
        app.router.add_get("/cpu", cpu_inline)
    else:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return app


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _rounds(request: web.Request) -> int:
    try:
        return int(request.query.get("rounds", DEFAULT_ROUNDS))
    except ValueError:
        raise web.HTTPBadRequest(text="rounds must be a whole number") from None


async def cpu_hybrid(request: web.Request) -> web.Response:
    total = await aiohttp_web.offload(request, crunch, _rounds(request), timeout=CPU_TIMEOUT_S)
    return web.json_response({"total": total})


async def cpu_executor(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    total = await loop.run_in_executor(request.app[EXECUTOR_KEY], crunch, _rounds(request))
    return web.json_response({"total": total})


async def cpu_inline(request: web.Request) -> web.Response:
    return web.json_response({"total": crunch(_rounds(request))})


async def _executor_life(
    app: web.Application, workers: int | None, priority: dict[str, Any]
) -> AsyncIterator[None]:
    with ProcessPoolExecutor(max_workers=workers, **priority) as executor:
        app[EXECUTOR_KEY] = executor
        yield
