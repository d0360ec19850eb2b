"""`hybrid top --once` renders a real engine's metrics endpoint."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web

import hybrid
from adapters import aiohttp_web
from adapters.top import top_command
from hybrid.messaging import DetectorConfig, Endpoint, InMemoryNetwork
from tests.ops.conftest import Serve
from tests.ops.test_metrics import square_route

FAST = DetectorConfig(min_interval_s=0.02, max_beats_per_s=50.0, initial_allowance_s=1.0)


async def test_top_once_shows_the_engines_workers_and_counts(
    serve: Serve, http: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    app = web.Application()
    aiohttp_web.setup(app, workers=1, metrics=True, pools={"web": hybrid.PoolSpec(workers=2)})
    app.router.add_get("/square", square_route)
    server = await serve(app)
    for x in range(3):
        async with http.get(server.make_url("/square"), params={"x": str(x)}) as response:
            assert response.status == 200
    url = str(server.make_url("/metrics"))
    status = await asyncio.to_thread(top_command, [url, "--once", "--interval", "0.1"])
    assert status == 0
    shown = capsys.readouterr().out
    assert "workers 3 (busy 0)" in shown
    assert "completed 3" in shown
    engine = aiohttp_web.get_engine(app)
    for pool in ("default", "web"):
        for worker in engine.stats(pool).per_worker:
            assert str(worker.pid) in shown
    assert "square" in shown


def test_top_says_on_stderr_it_cannot_read_the_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert top_command([f"http://127.0.0.1:{port}/metrics", "--once"]) == 1
    shown = capsys.readouterr().err
    assert "cannot read" in shown
    assert "Connection refused" in shown


async def test_top_once_shows_messaging_peers_with_their_state_and_timing(
    serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    app = web.Application()
    aiohttp_web.setup(app, workers=1, metrics=True)
    server = await serve(app)
    network = InMemoryNetwork()
    async with (
        Endpoint(network.connect("edge"), config=FAST) as edge,
        Endpoint(network.connect("core"), config=FAST) as core,
    ):
        aiohttp_web.get_metrics(app).watch_peers(edge)
        edge.add_peer("core")
        async with asyncio.timeout(10):
            while edge.detector("core").observations < 3 or core.detector("edge").observations < 1:
                await asyncio.sleep(0.02)
        url = str(server.make_url("/metrics"))
        status = await asyncio.to_thread(top_command, [url, "--once", "--interval", "0.1"])
    assert status == 0
    shown = capsys.readouterr().out
    row = next(line for line in shown.splitlines() if "edge" in line and "core" in line)
    assert "alive" in row
    assert "0.0 ms" in row  # same host: no clock offset


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["not-a-url"], "not an http(s) URL: 'not-a-url'"),
        (["ftp://127.0.0.1/metrics"], "not an http(s) URL"),
        (["--interval", "0"], "must be > 0"),
        (["--interval", "soon"], "not a number of seconds"),
    ],
)
def test_top_refuses_bad_arguments_in_one_line(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        top_command([*argv, "--once"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert said in error
    assert "Traceback" not in error


async def test_top_says_when_the_page_is_not_metrics(
    serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>a web page</body></html>\n")

    app = web.Application()
    app.router.add_get("/", page)
    server = await serve(app)
    url = str(server.make_url("/"))
    assert await asyncio.to_thread(top_command, [url, "--once", "--interval", "0.1"]) == 1
    assert "is not a metrics page" in capsys.readouterr().err
