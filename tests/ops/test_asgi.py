"""hybrid inside Starlette and FastAPI apps, served by uvicorn on 127.0.0.1 and called with
httpx: life cycle, HTTP answers for engine errors, disconnects, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from adapters import starlette as hybrid_asgi
from examples.webapp import fastapi_app
from examples.webapp.work import crunch
from tests import tasks
from tests.helpers import (
    literal_block,
    pid_alive,
    wait_for_full_strength,
    wait_until_gone,
    worker_pids,
)
from tests.ops import worker_tasks


class Served:
    """An app served by uvicorn on 127.0.0.1 until :meth:`stop`."""

    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())

    async def started(self) -> None:
        async with asyncio.timeout(20):
            while not self.server.started:
                if self.task.done():
                    self.task.result()  # the startup error
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Shut down as on SIGTERM: the lifespan's shutdown runs, the engine closes."""
        self.server.should_exit = True
        async with asyncio.timeout(30):
            await self.task


Serve = Callable[[Starlette], Awaitable[Served]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve apps with uvicorn on 127.0.0.1 (their lifespans run); stop them at teardown."""
    running: list[Served] = []

    async def start(app: Starlette) -> Served:
        served = Served(app)
        running.append(served)
        await served.started()
        return served

    yield start
    for served in reversed(running):
        await served.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def pid_route(request: Request) -> JSONResponse:
    return JSONResponse(await hybrid_asgi.offload(request, tasks.pid_of))


async def sleep_route(request: Request) -> JSONResponse:
    seconds = float(request.query_params["s"])
    return JSONResponse(await hybrid_asgi.offload(request, tasks.sleep_and_pid, seconds))


async def marked_sleep_route(request: Request) -> JSONResponse:
    path, seconds = request.query_params["path"], float(request.query_params["s"])
    pid = await hybrid_asgi.offload(request, worker_tasks.mark_then_sleep, path, seconds)
    return JSONResponse(pid)


async def crash_route(request: Request) -> PlainTextResponse:
    await hybrid_asgi.offload(request, tasks.exit_now, 3)
    return PlainTextResponse("unreachable")


async def timeout_route(request: Request) -> PlainTextResponse:
    await hybrid_asgi.offload(request, tasks.sleep_then, 5.0, None, timeout=0.3)
    return PlainTextResponse("unreachable")


def make_app(**options: Any) -> Starlette:
    routes = [
        Route("/pid", pid_route),
        Route("/sleep", sleep_route),
        Route("/marked-sleep", marked_sleep_route),
        Route("/crash", crash_route),
        Route("/timeout", timeout_route),
    ]
    app = Starlette(routes=routes)
    hybrid_asgi.setup(app, **options)
    return app


def samples(exported: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parsed Prometheus text: value by (sample name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exported)
        for sample in family.samples
    }


async def test_engine_starts_with_the_app_and_closes_with_it(
    serve: Serve, http: httpx.AsyncClient
) -> None:
    app = make_app(workers=1)
    served = await serve(app)
    url = served.url
    engine = hybrid_asgi.get_engine(app)
    response = await http.get(f"{url}/pid")
    assert response.status_code == 200
    pid = response.json()
    assert pid != os.getpid()
    assert pid in worker_pids(engine)
    assert (await http.get(f"{url}/pid")).json() == pid  # the same worker, reused
    await served.stop()
    assert engine.closed
    await wait_until_gone([pid])


async def test_engine_errors_become_http_answers(serve: Serve, http: httpx.AsyncClient) -> None:
    app = make_app(workers=1)
    served = await serve(app)
    url = served.url
    engine = hybrid_asgi.get_engine(app)
    response = await http.get(f"{url}/timeout")
    assert response.status_code == 504
    assert "timeout" in response.text
    await wait_for_full_strength(engine)
    assert (await http.get(f"{url}/crash")).status_code == 500
    await wait_for_full_strength(engine)
    stats = engine.stats()
    assert (stats.timed_out, stats.crashed, stats.worker_restarts) == (1, 1, 2)
    assert (await http.get(f"{url}/pid")).status_code == 200


async def test_a_full_queue_answers_503_with_retry_after_and_metrics_count_it(
    serve: Serve, http: httpx.AsyncClient
) -> None:
    app = make_app(workers=1, max_queued=1, metrics=True)
    served = await serve(app)
    url = served.url
    engine = hybrid_asgi.get_engine(app)
    running = asyncio.ensure_future(http.get(f"{url}/sleep", params={"s": "0.6"}))
    async with asyncio.timeout(10):
        while engine.stats().busy < 1:
            await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(http.get(f"{url}/sleep", params={"s": "0"}))
    async with asyncio.timeout(10):
        while engine.stats().queued < 1:
            await asyncio.sleep(0.01)
    refused = await http.get(f"{url}/pid")
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert [(await r).status_code for r in (running, queued)] == [200, 200]
    exported = samples((await http.get(f"{url}/metrics")).text)
    outcome = (("function", "{}"), ("outcome", "{}"), ("pool", "default"))

    def tasks_total(function: str, result: str) -> float:
        labels = tuple((name, value.format(function if name == "function" else result))
                       for name, value in outcome)  # fmt: skip
        return exported[("hybrid_tasks_total", labels)]

    assert tasks_total("pid_of", "rejected") == 1.0
    assert tasks_total("sleep_and_pid", "completed") == 2.0
    assert exported[("hybrid_workers", (("pool", "default"),))] == 1.0


async def test_client_disconnect_cancels_the_task_and_frees_its_worker(
    serve: Serve, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    app = make_app(workers=1)
    served = await serve(app)
    url = served.url
    engine = hybrid_asgi.get_engine(app)
    (busy_pid,) = worker_pids(engine)
    started = tmp_path / "started"
    params = {"path": str(started), "s": "60"}
    request = asyncio.ensure_future(http.get(f"{url}/marked-sleep", params=params))
    # Wait until the call runs: one cancelled before it starts is skipped, its worker kept.
    async with asyncio.timeout(10):
        while not started.exists():
            await asyncio.sleep(0.01)
    request.cancel()  # the client gives up: httpx closes its connection
    with contextlib.suppress(asyncio.CancelledError):
        await request
    await wait_until_gone([busy_pid])
    await wait_for_full_strength(engine)
    stats = engine.stats()
    assert (stats.cancelled, stats.busy, stats.crashed) == (1, 0, 0)
    new_pid = (await http.get(f"{url}/pid")).json()
    assert new_pid != busy_pid
    assert pid_alive(new_pid)


async def test_fastapi_app_keeps_its_own_lifespan_and_answers_in_json(
    serve: Serve, http: httpx.AsyncClient
) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append(f"startup, engine running: {not hybrid_asgi.get_engine(app).closed}")
        yield
        events.append(f"shutdown, engine running: {not hybrid_asgi.get_engine(app).closed}")

    app = FastAPI(lifespan=lifespan)
    hybrid_asgi.setup(app, workers=1)

    @app.get("/square/{x}")
    async def square(request: Request, x: int) -> dict[str, int]:
        return {"square": await hybrid_asgi.offload(request, tasks.square, x)}

    @app.get("/timeout")
    async def timeout(request: Request) -> None:
        await hybrid_asgi.offload(request, tasks.sleep_then, 5.0, None, timeout=0.3)

    served = await serve(app)
    url = served.url
    assert (await http.get(f"{url}/square/7")).json() == {"square": 49}
    response = await http.get(f"{url}/timeout")
    assert response.status_code == 504
    assert "timeout" in response.json()["detail"]
    await served.stop()
    assert events == ["startup, engine running: True", "shutdown, engine running: True"]
    assert hybrid_asgi.get_engine(app).closed


async def test_the_adapters_docstring_example_serves(serve: Serve, http: httpx.AsyncClient) -> None:
    namespace: dict[str, Any] = {}
    exec(literal_block(hybrid_asgi.__doc__), namespace)
    served = await serve(namespace["app"])
    response = await http.get(f"{served.url}/total", params={"rounds": "500"})
    assert response.json() == {"total": crunch(500)}
    exported = samples((await http.get(f"{served.url}/metrics")).text)
    labels = (("function", "crunch"), ("outcome", "completed"), ("pool", "default"))
    assert exported[("hybrid_tasks_total", labels)] == 1.0


@pytest.mark.parametrize("mode", fastapi_app.MODES)
async def test_the_fastapi_example_serves_in_both_modes(
    serve: Serve, http: httpx.AsyncClient, mode: fastapi_app.Mode
) -> None:
    served = await serve(fastapi_app.build_app(mode, workers=1))
    assert (await http.get(f"{served.url}/health")).text == "ok"
    response = await http.get(f"{served.url}/cpu", params={"rounds": "1000"})
    assert response.json() == {"total": crunch(1000)}
