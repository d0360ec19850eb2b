"""hybrid inside an aiohttp app: life cycle, HTTP answers for engine errors, disconnects."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import hybrid
from adapters import aiohttp_web
from hybrid.shared import MemoryCache, leftover_segments
from tests import tasks
from tests.helpers import pid_alive, wait_for_full_strength, wait_until_gone, worker_pids
from tests.ops import worker_tasks
from tests.ops.conftest import Serve
from tests.ops.test_logs import Collect, wait_for_records


async def pid_route(request: web.Request) -> web.Response:
    return web.json_response(await aiohttp_web.offload(request, tasks.pid_of))


async def sleep_route(request: web.Request) -> web.Response:
    seconds = float(request.query["s"])
    return web.json_response(await aiohttp_web.offload(request, tasks.sleep_and_pid, seconds))


async def marked_sleep_route(request: web.Request) -> web.Response:
    path, seconds = request.query["path"], float(request.query["s"])
    return web.json_response(
        await aiohttp_web.offload(request, worker_tasks.mark_then_sleep, path, seconds)
    )


async def crash_route(request: web.Request) -> web.Response:
    await aiohttp_web.offload(request, tasks.exit_now, 3)
    return web.Response(text="unreachable")


async def timeout_route(request: web.Request) -> web.Response:
    await aiohttp_web.offload(request, tasks.sleep_then, 5.0, None, timeout=0.3)
    return web.Response(text="unreachable")


async def log_route(request: web.Request) -> web.Response:
    task_id = request.query["id"]
    pid = await aiohttp_web.offload(request, worker_tasks.log_lines, 2, task_id=task_id)
    return web.json_response(pid)


def make_app(**options: object) -> web.Application:
    app = web.Application()
    aiohttp_web.setup(app, **options)  # type: ignore[arg-type]
    app.router.add_get("/pid", pid_route)
    app.router.add_get("/sleep", sleep_route)
    app.router.add_get("/marked-sleep", marked_sleep_route)
    app.router.add_get("/crash", crash_route)
    app.router.add_get("/timeout", timeout_route)
    app.router.add_get("/log", log_route)
    return app


async def test_engine_starts_with_the_app_and_closes_with_it(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    app = make_app(workers=1)
    server = await serve(app)
    engine = aiohttp_web.get_engine(app)
    async with http.get(server.make_url("/pid")) as response:
        assert response.status == 200
        pid = await response.json()
    assert pid != os.getpid()
    assert pid in worker_pids(engine)
    await server.close()
    assert engine.closed
    await wait_until_gone([pid])


async def test_engine_errors_become_http_answers(serve: Serve, http: aiohttp.ClientSession) -> None:
    app = make_app(workers=1)
    server = await serve(app)
    engine = aiohttp_web.get_engine(app)
    async with http.get(server.make_url("/timeout")) as response:
        assert response.status == 504
        assert "timeout" in await response.text()
    await wait_for_full_strength(engine)
    async with http.get(server.make_url("/crash")) as response:
        assert response.status == 500
    await wait_for_full_strength(engine)
    stats = engine.stats()
    assert (stats.timed_out, stats.crashed, stats.worker_restarts) == (1, 1, 2)
    async with http.get(server.make_url("/pid")) as response:
        assert response.status == 200


async def test_a_full_queue_answers_503_with_retry_after(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    app = make_app(workers=1, max_queued=1, metrics=True)
    server = await serve(app)
    engine = aiohttp_web.get_engine(app)
    running = asyncio.ensure_future(http.get(server.make_url("/sleep"), params={"s": "0.6"}))
    async with asyncio.timeout(10):
        while engine.stats().busy < 1:
            await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(http.get(server.make_url("/sleep"), params={"s": "0"}))
    async with asyncio.timeout(10):
        while engine.stats().queued < 1:
            await asyncio.sleep(0.01)
    async with http.get(server.make_url("/pid")) as response:
        assert response.status == 503
        assert int(response.headers["Retry-After"]) >= 1
    for request in (running, queued):
        async with await request as response:
            assert response.status == 200
    async with http.get(server.make_url("/metrics")) as response:
        exported = await response.text()
    assert 'hybrid_tasks_total{function="pid_of",outcome="rejected",pool="default"} 1.0' in exported
    assert (
        'hybrid_tasks_total{function="sleep_and_pid",outcome="completed",pool="default"} 2.0'
        in exported
    )


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_client_disconnect_cancels_the_task_and_frees_its_worker(
    serve: Serve, http: aiohttp.ClientSession, handler_cancellation: bool, tmp_path: Path
) -> None:
    """Whether aiohttp cancels the handler itself (handler_cancellation) or not."""
    app = make_app(workers=1)
    server = await serve(app, handler_cancellation=handler_cancellation)
    engine = aiohttp_web.get_engine(app)
    (busy_pid,) = worker_pids(engine)
    started = tmp_path / "started"
    params = {"path": str(started), "s": "60"}
    request = asyncio.ensure_future(http.get(server.make_url("/marked-sleep"), params=params))
    # Wait until the call runs: one cancelled before it starts is skipped, its worker kept.
    async with asyncio.timeout(10):
        while not started.exists():
            await asyncio.sleep(0.01)
    request.cancel()  # the client gives up: aiohttp closes its connection
    await wait_until_gone([busy_pid])
    await wait_for_full_strength(engine)
    stats = engine.stats()
    assert (stats.cancelled, stats.busy, stats.crashed) == (1, 0, 0)
    async with http.get(server.make_url("/pid")) as response:
        new_pid = await response.json()
    assert new_pid != busy_pid
    assert pid_alive(new_pid)


async def test_forwarded_worker_logs_carry_the_requests_task_id(
    serve: Serve, http: aiohttp.ClientSession, collected: Collect
) -> None:
    app = make_app(
        workers=1,
        forward_logs=True,
        pools={"side": hybrid.PoolSpec(workers=1)},
        initializer=tasks.remember_init,  # the app's own initializer still runs
        initargs=("app",),
    )
    server = await serve(app)
    async with http.get(server.make_url("/log"), params={"id": "req-1"}) as response:
        pid = await response.json()
    assert [value for value, _ in await aiohttp_web.get_engine(app).run(tasks.initialized)] == [
        "app"
    ]
    await wait_for_records(collected, 2)
    assert [(r.task_id, r.worker_pid) for r in collected.records] == [("req-1", pid)] * 2  # type: ignore[attr-defined]


async def test_workers_yield_to_the_web_process_by_default(serve: Serve) -> None:
    app = make_app(workers=1)
    await serve(app)
    engine = aiohttp_web.get_engine(app)
    (pid,) = worker_pids(engine)
    here = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, here + aiohttp_web.WORKER_NICE)


async def test_workers_keep_the_web_process_priority_when_asked(serve: Serve) -> None:
    app = make_app(workers=1, nice=0)
    await serve(app)
    (pid,) = worker_pids(aiohttp_web.get_engine(app))
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)


async def big_route(request: web.Request) -> web.Response:
    data = await request.read()
    size, segments = await aiohttp_web.offload(request, tasks.live_segments_of, data, os.getpid())
    return web.json_response({"size": size, "segments": segments})


async def cached_route(request: web.Request) -> web.Response:
    cache = request.app[CACHE_KEY]
    pid, warm = await aiohttp_web.offload(request, tasks.cached_lookup, 11, cache=cache)
    return web.json_response({"pid": pid, "warm": warm})


CACHE_KEY = web.AppKey("test_cache", MemoryCache)


async def test_a_100_mb_body_goes_to_the_worker_through_shared_memory(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    app = web.Application(client_max_size=200 * 2**20)
    aiohttp_web.setup(app, workers=1)
    app.router.add_post("/big", big_route)
    server = await serve(app)
    body = io.BytesIO(bytes(100 * 2**20))
    async with http.post(server.make_url("/big"), data=body) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["size"] == 100 * 2**20
    assert answer["segments"] >= 1  # the body sat in a segment while the call ran
    assert leftover_segments() == []


async def test_offload_answers_identical_calls_from_its_cache(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    app = make_app(workers=1)
    app[CACHE_KEY] = MemoryCache()
    app.router.add_get("/cached", cached_route)
    server = await serve(app)
    answers = []
    for _ in range(3):
        async with http.get(server.make_url("/cached")) as response:
            assert response.status == 200
            answers.append(await response.json())
    assert answers[0]["warm"] is False
    assert answers == [answers[0]] * 3  # computed once, then served from the cache
    assert aiohttp_web.get_engine(app).stats().completed == 1
