"""The example web app: every mode answers, and `python -m examples.webapp` stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from examples.webapp import build_app
from examples.webapp.work import crunch
from tests.ops.conftest import Serve

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 1000  # keeps the call tiny; the benchmark uses the ~20 ms default


@pytest.mark.parametrize("mode", ["inline", "executor", "hybrid"])
async def test_every_mode_answers_the_same(
    serve: Serve, http: aiohttp.ClientSession, mode: str
) -> None:
    server = await serve(build_app(mode, workers=1))  # type: ignore[arg-type]
    async with http.get(server.make_url("/cpu"), params={"rounds": str(ROUNDS)}) as response:
        assert response.status == 200
        assert await response.json() == {"total": crunch(ROUNDS)}
    async with http.get(server.make_url("/health")) as response:
        assert await response.text() == "ok"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def test_python_m_examples_webapp_serves_and_stops_on_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "examples.webapp", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert get(f"{base}/health") == b"ok"
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the example app did not come up"
                time.sleep(0.1)
        assert json.loads(get(f"{base}/cpu?rounds={ROUNDS}")) == {"total": crunch(ROUNDS)}
        assert b'outcome="completed"' in get(f"{base}/metrics")
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
