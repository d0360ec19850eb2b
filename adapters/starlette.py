"""hybrid inside a Starlette or FastAPI app: one-line setup and a helper for CPU-bound calls.

::

    from fastapi import FastAPI, Request

    from adapters import starlette as hybrid_asgi
    from examples.webapp.work import crunch  # any importable module-level function

    app = FastAPI()
    hybrid_asgi.setup(app, workers=2, max_queued=256, metrics=True)

    @app.get("/total")
    async def total(request: Request, rounds: int = 1000) -> dict[str, int]:
        return {"total": await hybrid_asgi.offload(request, crunch, rounds, timeout=5.0)}

:func:`setup` wraps the app's lifespan: the engine (and a loop-lag watch, and optionally
worker log forwarding) starts before the app's own startup code and closes after its
shutdown code; ``metrics=True`` adds ``GET /metrics``. :func:`offload` runs a call in a
worker and turns the engine's errors into HTTP answers, as ``adapters.aiohttp_web`` does:
:class:`~hybrid.TaskTimeout` -> 504, :class:`~hybrid.Overloaded` and
:class:`~hybrid.EngineClosed` -> 503 with ``Retry-After``, :class:`~hybrid.WorkerCrashed`
-> 500 (raised as ``starlette.exceptions.HTTPException``, which FastAPI answers in JSON).
When the client disconnects, the task is cancelled and its worker freed (a queued task is
dropped; a running one's worker is killed and replaced). Needs the ``asgi`` extra:
``pip install 'hybrid-engine[asgi]'``; add ``metrics`` for ``/metrics``.
"""

from __future__ import annotations

from . import _identity  # noqa: F401  (first: one clear line if `adapters` is not ours)

# isort: split

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, cast

try:
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "adapters.starlette needs starlette: pip install 'hybrid-engine[asgi]'", name=exc.name
    ) from exc

import hybrid
from hybrid.lag import LoopLagWatch
from hybrid.logs import WithTaskId
from hybrid.shared import Cache

from ._web import (
    MAX_RETRY_AFTER_S as MAX_RETRY_AFTER_S,
    WORKER_NICE as WORKER_NICE,
    retry_after_s as retry_after_s,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette
    from starlette.types import Lifespan

    from .prometheus import EngineMetrics

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left (for access logs)
# Where the engine lives: ``app.state.hybrid_engine`` and friends.
ENGINE_STATE = "hybrid_engine"
METRICS_STATE = "hybrid_metrics"
LAG_WATCH_STATE = "hybrid_lag_watch"


def setup(
    app: Starlette,
    *,
    metrics: bool = False,
    metrics_path: str = "/metrics",
    watch_lag: bool = True,
    forward_logs: bool = False,
    metrics_registry: CollectorRegistry | None = None,
    **engine_options: Any,
) -> None:
    """Run an engine for the app's lifetime, around the app's own lifespan.

    Works for :class:`starlette.applications.Starlette` and ``fastapi.FastAPI`` alike.

    Args:
        app: the application, before it starts.
        metrics: serve Prometheus metrics at ``metrics_path`` (needs the ``metrics``
            extra: ``pip install 'hybrid-engine[asgi,metrics]'``).
        watch_lag: measure the loop's lag and warn when something blocks it.
        forward_logs: send workers' log records to this process's loggers, tagged with
            ``worker_pid`` and ``task_id`` (``Engine(forward_logs=True)``).
        metrics_registry: the ``prometheus_client`` registry for the engine's metrics;
            a registry of their own by default.
        engine_options: passed to :class:`hybrid.Engine` (``workers``, ``max_queued``,
            ``pools``, ``nice``, ...). ``nice`` defaults to :data:`WORKER_NICE`, so that
            the workers yield a core to the process answering requests.

    The engine is :func:`get_engine` once the app has started; shutting down waits for
    running tasks to finish.
    """
    engine_options.setdefault("nice", WORKER_NICE)
    if metrics:
        from . import prometheus  # noqa: F401  (fail now, naming the extra, if it is missing)

        app.add_route(metrics_path, metrics_endpoint, methods=["GET"], include_in_schema=False)
    apps_own = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Mapping[str, Any] | None]:
        async with (
            _engine_life(app, metrics, metrics_registry, watch_lag, forward_logs, engine_options),
            apps_own(app) as state,
        ):
            yield state

    # Stateful or not, as the app's own lifespan is: its state, if any, passes through.
    app.router.lifespan_context = cast("Lifespan[Any]", lifespan)


@contextlib.asynccontextmanager
async def _engine_life(
    app: Starlette,
    metrics: bool,
    metrics_registry: CollectorRegistry | None,
    watch_lag: bool,
    forward_logs: bool,
    engine_options: dict[str, Any],
) -> AsyncIterator[None]:
    watch = LoopLagWatch() if watch_lag else None
    engine = hybrid.Engine(**engine_options, forward_logs=forward_logs)
    try:
        await engine.start()
        setattr(app.state, ENGINE_STATE, engine)
        if watch is not None:
            watch.start()
            setattr(app.state, LAG_WATCH_STATE, watch)
        if metrics:
            from .prometheus import EngineMetrics

            exported = EngineMetrics(engine, registry=metrics_registry, lag_watch=watch)
            setattr(app.state, METRICS_STATE, exported)
        yield
    finally:
        await engine.close()
        if watch is not None:
            await watch.stop()


async def metrics_endpoint(request: Request) -> Response:
    """Serve the app's engine metrics in Prometheus' text format."""
    from .prometheus import CONTENT_TYPE

    metrics = getattr(request.app.state, METRICS_STATE, None)
    if metrics is None:
        raise HTTPException(503, "the engine has not started")
    await metrics.refresh()
    return Response(metrics.render(), headers={"Content-Type": CONTENT_TYPE})


def get_engine(app: Starlette) -> hybrid.Engine:
    """The app's engine; raises :class:`hybrid.EngineClosed` before startup."""
    engine = getattr(app.state, ENGINE_STATE, None)
    if engine is None:
        raise hybrid.EngineClosed("the app has not started (or starlette.setup was not called)")
    return cast("hybrid.Engine", engine)


def get_metrics(app: Starlette) -> EngineMetrics:
    """The app's metrics, to add peers or a Redis cluster; needs ``setup(..., metrics=True)``."""
    metrics = getattr(app.state, METRICS_STATE, None)
    if metrics is None:
        raise LookupError("the app has not started, or was set up without metrics=True")
    return cast("EngineMetrics", metrics)


async def offload(
    request: Request,
    fn: Callable[[*Ts], R],
    *args: *Ts,
    timeout: float | None = None,
    retries: int = 0,
    block: bool = False,
    task_id: str | None = None,
    pool: str = "default",
    key: Hashable | None = None,
    cache: Cache | None = None,
) -> R:
    """Run ``fn(*args)`` in one of the app's workers and return its result.

    Call it once the request's body has been read (FastAPI reads it before the handler
    runs): while the call runs, the request's ASGI channel is watched for the client's
    disconnect, and a body not yet read would be consumed.

    Args:
        request: the request being answered; if its client disconnects, the task is
            cancelled.
        fn: an importable module-level function (it is pickled by reference).
        args: its arguments.
        timeout: seconds the call may run in its worker; past it the answer is 504.
        retries: times to run the call again if its worker dies under it.
        block: when the engine's queue is full (``max_queued``), wait for room instead
            of answering 503 at once.
        task_id: tag the worker's log records for this call with this id.
        pool: the engine's pool to run in.
        key: run calls with the same key on the same worker (see :meth:`hybrid.Engine.run`).
        cache: keep the result in this :class:`~hybrid.shared.Cache` and answer identical
            calls from it.

    Returns:
        What ``fn(*args)`` returned.

    Raises:
        HTTPException: 504 when the call timed out (its worker was replaced); 503 with a
            ``Retry-After`` header when the queue is full or the engine is closing; 500
            when the worker died running the call; 499 when the client disconnected (the
            task was cancelled; nobody reads that answer).
        Exception: the call's own exception, unchanged.

    Cancellation: cancelling the handler cancels the task and frees its worker.
    """
    engine = get_engine(request.app)
    call = fn
    if task_id is not None:
        call = cast("Callable[[*Ts], R]", WithTaskId(task_id, fn))
    try:
        handle: hybrid.TaskHandle[R] = await engine.submit(
            call, *args, timeout=timeout, retries=retries, block=block, pool=pool, key=key,
            cache=cache,
        )  # fmt: skip
    except (hybrid.Overloaded, hybrid.EngineClosed) as exc:
        raise _unavailable(engine, pool, exc) from exc
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, handle))
    try:
        return await handle
    except asyncio.CancelledError:
        handle.cancel()
        if watcher.done() and not watcher.cancelled() and watcher.result():
            raise HTTPException(CLIENT_CLOSED_REQUEST, "client closed the request") from None
        raise
    except hybrid.TaskTimeout as exc:
        raise HTTPException(504, str(exc)) from exc
    except hybrid.WorkerCrashed as exc:
        raise HTTPException(500, "the worker died running the request") from exc
    except (hybrid.Overloaded, hybrid.EngineClosed) as exc:
        raise _unavailable(engine, pool, exc) from exc
    finally:
        watcher.cancel()


async def _cancel_on_disconnect(request: Request, handle: hybrid.TaskHandle[Any]) -> bool:
    """Cancel the call when the client goes away; True if it did. The server answers
    ``receive()`` with ``http.disconnect`` then (uvicorn, hypercorn, daphne alike), so
    nothing polls."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return handle.cancel()


def _unavailable(engine: hybrid.Engine, pool: str, exc: hybrid.HybridError) -> HTTPException:
    return HTTPException(503, str(exc), headers={"Retry-After": str(retry_after_s(engine, pool))})
