"""/metrics under load: scraped over HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

import hybrid
from adapters import aiohttp_web
from adapters.prometheus import EngineMetrics
from adapters.redis import NodeConfig, WorkerNode
from hybrid.messaging import Endpoint, InMemoryNetwork
from tests import tasks
from tests.helpers import wait_for_full_strength
from tests.ops.conftest import Serve

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
REQUESTS = 40
DASHBOARD = Path(__file__).resolve().parents[2] / "examples/webapp/grafana_dashboard.json"


async def square_route(request: web.Request) -> web.Response:
    x = int(request.query["x"])
    return web.json_response(await aiohttp_web.offload(request, tasks.square, x, pool="web"))


async def crash_route(request: web.Request) -> web.Response:
    await aiohttp_web.offload(request, tasks.exit_now, 3)
    return web.Response(text="unreachable")


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_metrics_are_scraped_and_parsed_after_load(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    app = web.Application()
    aiohttp_web.setup(app, workers=1, metrics=True, pools={"web": hybrid.PoolSpec(workers=2)})
    app.router.add_get("/square", square_route)
    app.router.add_get("/crash", crash_route)
    server = await serve(app)
    engine = aiohttp_web.get_engine(app)

    async def square(x: int) -> int:
        async with http.get(server.make_url("/square"), params={"x": str(x)}) as response:
            assert response.status == 200
            result: int = await response.json()
            return result

    assert await asyncio.gather(*(square(x) for x in range(REQUESTS))) == [
        x * x for x in range(REQUESTS)
    ]
    async with http.get(server.make_url("/crash")) as response:
        assert response.status == 500
    await wait_for_full_strength(engine)

    samples = await scrape(http, str(server.make_url("/metrics")))
    fn = {"pool": "web", "function": "square"}
    assert value(samples, "hybrid_tasks_submitted_total", **fn) == REQUESTS
    assert value(samples, "hybrid_tasks_total", **fn, outcome="completed") == REQUESTS
    assert value(samples, "hybrid_task_run_seconds_count", **fn) == REQUESTS
    assert value(samples, "hybrid_task_queue_wait_seconds_count", **fn) == REQUESTS
    crashed = {"pool": "default", "function": "exit_now", "outcome": "crashed"}
    assert value(samples, "hybrid_tasks_total", **crashed) == 1
    assert engine.stats("web").completed == REQUESTS  # the engine's own count agrees
    assert engine.stats("default").completed == 0
    assert engine.stats("default").crashed == 1
    assert value(samples, "hybrid_worker_restarts_total", pool="default") == 1
    assert value(samples, "hybrid_worker_restarts_total", pool="web") == 0
    assert value(samples, "hybrid_workers", pool="web") == 2
    assert value(samples, "hybrid_workers", pool="default") == 1
    assert value(samples, "hybrid_loop_lag_seconds") >= 0
    reported_pids = {
        (dict(labels)["pool"], int(dict(labels)["pid"]))
        for name, labels in samples
        if name == "hybrid_worker_info"
    }
    assert reported_pids == {
        (pool, worker.pid)
        for pool in ("default", "web")
        for worker in engine.stats(pool).per_worker
    }
    for slot in ("0", "1"):
        rss = value(samples, "hybrid_worker_resident_memory_bytes", pool="web", worker=slot)
        assert rss > 1_000_000


CALL_S = 0.1  # a call short enough that the pool sends the next one to wait behind it


async def sleep_route(request: web.Request) -> web.Response:
    return web.json_response(await aiohttp_web.offload(request, tasks.sleep_then, CALL_S, 1))


async def test_run_time_is_the_calls_own_and_a_wait_behind_another_is_queueing(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """Regression: the run time was counted from the moment a call was sent, so a call
    sent to wait on its worker behind another (pipelined) ran "twice as long" and its wait
    was missing from the queue-wait histogram."""
    app = web.Application()
    aiohttp_web.setup(app, workers=1, metrics=True)
    app.router.add_get("/sleep", sleep_route)
    server = await serve(app)

    async def call() -> None:
        async with http.get(server.make_url("/sleep")) as response:
            assert response.status == 200

    for _ in range(2):  # the pool learns the call is short, and pipelines it from then on
        await call()
    await asyncio.gather(*(call() for _ in range(6)))
    samples = await scrape(http, str(server.make_url("/metrics")))
    fn = {"pool": "default", "function": "sleep_then"}
    calls = value(samples, "hybrid_task_run_seconds_count", **fn)
    assert calls == 8
    assert value(samples, "hybrid_task_run_seconds_sum", **fn) / calls < 1.3 * CALL_S
    # Six calls at once on one worker wait 0, 1, ..., 5 calls' time: 2.5 on average.
    assert value(samples, "hybrid_task_queue_wait_seconds_sum", **fn) / 6 > 2 * CALL_S


async def test_the_grafana_dashboard_charts_only_metrics_that_exist(
    serve: Serve, http: aiohttp.ClientSession, redis_url: str
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    charted = {name for expr in expressions for name in re.findall(r"\bhybrid_\w+", expr)}
    app = web.Application()
    aiohttp_web.setup(app, workers=1, metrics=True)
    server = await serve(app)
    metrics = aiohttp_web.get_metrics(app)
    metrics.watch_peers(Endpoint(InMemoryNetwork().connect("a")))
    collector = metrics.watch_redis(redis_url, prefix=f"test-dashboard-{uuid.uuid4().hex[:8]}")
    try:
        async with http.get(server.make_url("/metrics")) as response:
            families = list(text_string_to_metric_families(await response.text()))
    finally:
        await collector.aclose()
    exported = {
        family.name + suffix
        for family in families
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }
    assert charted
    assert charted <= exported, charted - exported


async def test_a_plain_engine_run_is_counted_by_function() -> None:
    async with hybrid.Engine(workers=1) as engine:
        metrics = EngineMetrics(engine)
        assert await engine.run(tasks.square, 3) == 9
        with pytest.raises(hybrid.TaskTimeout):
            await engine.run(tasks.sleep_then, 10, timeout=0.2)
        assert [x async for x in engine.map(tasks.square, range(4))] == [0, 1, 4, 9]
        await asyncio.sleep(0)  # settle callbacks run on the loop's next turn
        samples = parse(metrics.render().decode())
    square = {"pool": "default", "function": "square"}
    assert value(samples, "hybrid_tasks_submitted_total", **square) == 5
    assert value(samples, "hybrid_tasks_total", **square, outcome="completed") == 5
    assert value(samples, "hybrid_task_run_seconds_count", **square) >= 2
    timed_out = {"pool": "default", "function": "sleep_then", "outcome": "timed_out"}
    assert value(samples, "hybrid_tasks_total", **timed_out) == 1


SELECTOR = re.compile(r"(hybrid_\w+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def selectors(expression: str, pools: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The series selectors of a PromQL expression: metric name and label matchers, with
    ``$pool`` as Grafana's "All" expands it (the pools of ``label_values``, or'ed)."""
    return [
        (name, MATCHER.findall(matchers.replace("$pool", pools)))
        for name, matchers in SELECTOR.findall(expression)
    ]


def matches(labels: frozenset[tuple[str, str]], matchers: list[tuple[str, str, str]]) -> bool:
    named = dict(labels)
    for label, operator, wanted in matchers:
        found = named.get(label, "")
        hit = re.fullmatch(wanted, found) is not None if "~" in operator else found == wanted
        if hit == operator.startswith("!"):
            return False
    return True


async def test_every_dashboard_panel_shows_data_from_a_live_scrape(
    serve: Serve, http: aiohttp.ClientSession, redis_url: str
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    app = web.Application()
    aiohttp_web.setup(app, workers=1, metrics=True)
    app.router.add_get("/square", square_route)
    app.router.add_get("/crash", crash_route)
    server = await serve(app)
    engine = aiohttp_web.get_engine(app)
    metrics = aiohttp_web.get_metrics(app)
    network = InMemoryNetwork()
    prefix = f"test-dashboard-{uuid.uuid4().hex[:8]}"
    # A node that never serves still has its counters (at 0), as a fresh deployment does.
    node = WorkerNode(NodeConfig(url=redis_url, prefix=prefix, modules=("tests.tasks",)))
    collector = metrics.watch_redis(redis_url, prefix=prefix, nodes=(node,))
    async with Endpoint(network.connect("a")) as a, Endpoint(network.connect("b")) as b:
        metrics.watch_peers(a)
        a.add_peer("b")
        b.add_peer("a")
        async with asyncio.timeout(10):
            while a.detector("b").observations < 3:
                await asyncio.sleep(0.01)
        try:
            await engine.run(tasks.square, 2, pool="default")
            with pytest.raises(hybrid.TaskTimeout):
                await engine.run(tasks.sleep_then, 10, timeout=0.1)
            async with http.get(server.make_url("/crash")) as response:
                assert response.status == 500
            await wait_for_full_strength(engine)
            async with http.get(server.make_url("/metrics")) as response:
                samples = [
                    (sample.name, frozenset(sample.labels.items()))
                    for family in text_string_to_metric_families(await response.text())
                    for sample in family.samples
                ]
        finally:
            await collector.aclose()
    pools = "(" + "|".join(sorted({dict(labels)["pool"] for name, labels in samples
                                   if name == "hybrid_workers"})) + ")"  # fmt: skip
    blank = []
    for panel in dashboard["panels"]:
        wanted = [
            selector
            for target in panel["targets"]
            for selector in selectors(target["expr"], pools)
        ]
        assert wanted, panel["title"]
        shows_data = any(
            sample_name in (name, f"{name}_total") and matches(labels, matchers)
            for name, matchers in wanted
            for sample_name, labels in samples
        )
        if not shows_data:
            blank.append(panel["title"])
    assert blank == []
