"""hybrid inside an aiohttp web app: one-line setup and a handler helper for CPU-bound calls.

::

    from aiohttp import web

    from adapters import aiohttp_web
    from examples.webapp.work import crunch  # any importable module-level function

    async def total(request: web.Request) -> web.Response:
        rounds = int(request.query.get("rounds", "1000"))
        value = await aiohttp_web.offload(request, crunch, rounds, timeout=5.0)
        return web.json_response({"total": value})

    app = web.Application()
    app.router.add_get("/total", total)
    aiohttp_web.setup(app, workers=2, max_queued=256, metrics=True)

:func:`setup` starts the engine (and a loop-lag watch, and optionally worker log
forwarding and ``/metrics``) when the app starts and closes them on cleanup.
:func:`offload` runs a call in a worker and turns the engine's errors into HTTP answers:
:class:`~hybrid.TaskTimeout` -> 504, :class:`~hybrid.Overloaded` and
:class:`~hybrid.EngineClosed` -> 503 with ``Retry-After``, :class:`~hybrid.WorkerCrashed`
-> 500. When the client disconnects, the task is cancelled and its worker freed (a queued
task is dropped; a running one's worker is killed and replaced).
"""

from __future__ import annotations

from . import _identity  # noqa: F401  (first: one clear line if `adapters` is not ours)

# isort: split

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, cast

from aiohttp import web

import hybrid
from hybrid import ticks
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

    from .prometheus import EngineMetrics

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

DISCONNECT_POLL_S = 0.1  # how often a waiting handler checks that its client is still there


class ClientClosedRequest(web.HTTPClientError):
    """The client went away before the answer was ready (nginx's 499, for access logs)."""

    status_code = 499


ENGINE_KEY = web.AppKey("hybrid_engine", hybrid.Engine)
LAG_WATCH_KEY = web.AppKey("hybrid_lag_watch", LoopLagWatch)
METRICS_KEY: web.AppKey[EngineMetrics] = web.AppKey("hybrid_metrics")
DISCONNECT_WATCH_KEY: web.AppKey[_DisconnectWatch] = web.AppKey("hybrid_disconnect_watch")


def setup(
    app: web.Application,
    *,
    metrics: bool = False,
    metrics_path: str = "/metrics",
    watch_lag: bool = True,
    forward_logs: bool = False,
    metrics_registry: CollectorRegistry | None = None,
    **engine_options: Any,
) -> None:
    """Run an engine for the app's lifetime: started on startup, closed on cleanup.

    Args:
        app: the application, before it starts.
        metrics: serve Prometheus metrics at ``metrics_path`` (needs the ``metrics``
            extra: ``pip install 'hybrid-engine[metrics]'``).
        watch_lag: measure the loop's lag and warn when something blocks it.
        metrics_registry: the ``prometheus_client`` registry to put the engine's metrics
            in, e.g. ``prometheus_client.REGISTRY`` so that the app's own metrics and
            ``process_*`` are served on the same page; a registry of their own by default.
        forward_logs: send workers' log records to this process's loggers, in every
            pool, tagged with ``worker_pid`` and ``task_id`` (``Engine(forward_logs=True)``).
        engine_options: passed to :class:`hybrid.Engine` (``workers``, ``max_queued``,
            ``pools``, ``nice``, ...). ``nice`` defaults to :data:`WORKER_NICE` here, so
            that the workers yield a core to the process answering requests; ``nice=0``
            keeps them at this process's priority.

    The engine is ``app[ENGINE_KEY]`` once the app has started; closing waits for
    running tasks to finish.
    """
    engine_options.setdefault("nice", WORKER_NICE)
    if metrics:
        from . import prometheus  # noqa: F401  (fail now, naming the extra, if it is missing)

        app.router.add_get(metrics_path, metrics_handler)
    app.cleanup_ctx.append(
        lambda app: _engine_life(
            app, metrics, metrics_registry, watch_lag, forward_logs, engine_options
        )
    )


async def _engine_life(
    app: web.Application,
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
        app[ENGINE_KEY] = engine
        app[DISCONNECT_WATCH_KEY] = _DisconnectWatch()
        if watch is not None:
            watch.start()
            app[LAG_WATCH_KEY] = watch
        if metrics:
            from .prometheus import EngineMetrics

            app[METRICS_KEY] = EngineMetrics(engine, registry=metrics_registry, lag_watch=watch)
        yield
    finally:
        await engine.close()
        if watch is not None:
            await watch.stop()


async def metrics_handler(request: web.Request) -> web.Response:
    """Serve the app's engine metrics in Prometheus' text format."""
    from .prometheus import CONTENT_TYPE

    metrics = request.app.get(METRICS_KEY)
    if metrics is None:
        raise web.HTTPServiceUnavailable(text="the engine has not started")
    await metrics.refresh()
    response = web.Response(body=metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


def get_engine(app: web.Application) -> hybrid.Engine:
    """The app's engine; raises :class:`hybrid.EngineClosed` before startup."""
    engine = app.get(ENGINE_KEY)
    if engine is None:
        raise hybrid.EngineClosed("the app has not started (or aiohttp_web.setup was not called)")
    return engine


def get_metrics(app: web.Application) -> EngineMetrics:
    """The app's metrics, to add peers or a Redis cluster; needs ``setup(..., metrics=True)``."""
    metrics = app.get(METRICS_KEY)
    if metrics is None:
        raise LookupError("the app has not started, or was set up without metrics=True")
    return metrics


async def offload(
    request: web.Request,
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

    The call goes the way :meth:`hybrid.Engine.run` sends it: through ``cache``, then
    shared memory for large buffers, then a worker.

    Args:
        request: the request being answered; if its client disconnects, the task is
            cancelled.
        timeout: seconds the call may run in its worker; past it the answer is 504.
        retries: times to run the call again if its worker dies under it.
        block: when the engine's queue is full (``max_queued``), wait for room instead
            of answering 503 at once.
        task_id: tag the worker's log records for this call with this id.
        pool: the engine's pool to run in.
        key: run calls with the same key on the same worker (see :meth:`hybrid.Engine.run`).
        cache: keep the result in this :class:`~hybrid.shared.Cache` and answer identical
            calls from it.

    Raises:
        web.HTTPGatewayTimeout: the call timed out (its worker was replaced).
        web.HTTPServiceUnavailable: the queue is full or the engine is closing, with a
            ``Retry-After`` header.
        web.HTTPInternalServerError: the worker died running the call.
        ClientClosedRequest: the client disconnected; the task was cancelled.
        Exception: the call's own exception, unchanged.

    Cancellation: cancelling the handler cancels the task and frees its worker.
    """
    app = request.app
    engine = get_engine(app)
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
    watch = app.get(DISCONNECT_WATCH_KEY) or _DisconnectWatch()
    waiter = watch.add(request, handle.cancel)
    try:
        return await handle
    except asyncio.CancelledError:
        handle.cancel()
        if waiter.client_gone:
            raise ClientClosedRequest(text="client closed the request") from None
        raise
    except hybrid.TaskTimeout as exc:
        raise web.HTTPGatewayTimeout(text=str(exc)) from exc
    except hybrid.WorkerCrashed as exc:
        raise web.HTTPInternalServerError(text="the worker died running the request") from exc
    except (hybrid.Overloaded, hybrid.EngineClosed) as exc:
        raise _unavailable(engine, pool, exc) from exc
    finally:
        watch.discard(waiter)


def _unavailable(
    engine: hybrid.Engine, pool: str, exc: hybrid.HybridError
) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(
        text=str(exc), headers={"Retry-After": str(retry_after_s(engine, pool))}
    )


class _Waiter:
    """A handler waiting for its task; ``client_gone`` once its connection has closed."""

    __slots__ = ("client_gone", "on_gone", "request")

    def __init__(self, request: web.Request, on_gone: Callable[[], object]) -> None:
        self.request = request
        self.on_gone = on_gone
        self.client_gone = False


class _DisconnectWatch:
    """Tells waiting handlers when their client disconnects; one timer however many wait.

    aiohttp no longer cancels handlers when their client disconnects (unless the app
    runs with ``handler_cancellation=True``), so the waiting handlers are checked here.
    """

    def __init__(self) -> None:
        self._waiters: set[_Waiter] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, request: web.Request, on_gone: Callable[[], object]) -> _Waiter:
        waiter = _Waiter(request, on_gone)
        self._waiters.add(waiter)
        if self._handle is None:
            self._schedule()
        return waiter

    def discard(self, waiter: _Waiter) -> None:
        self._waiters.discard(waiter)

    def _check(self) -> None:
        self._handle = None
        for waiter in list(self._waiters):
            transport = waiter.request.transport
            if transport is None or transport.is_closing():
                self._waiters.discard(waiter)
                waiter.client_gone = True
                waiter.on_gone()
        if self._waiters:
            self._schedule()

    def _schedule(self) -> None:
        # On the shared grid, so the check rides the engine's own wake-ups.
        loop = asyncio.get_running_loop()
        delay_s = ticks.until_next(loop.time(), DISCONNECT_POLL_S)
        self._handle = loop.call_later(delay_s, self._check)
