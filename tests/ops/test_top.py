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
from tests.ops.conftest import Serve
from tests.ops.test_metrics import square_route


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


def test_top_says_when_it_cannot_read_the_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert top_command([f"http://127.0.0.1:{port}/metrics", "--once"]) == 1
    assert "cannot read" in capsys.readouterr().out
