"""The examples in the operations modules' docstrings run, so they cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters import aiohttp_web
from examples.webapp.work import crunch
from hybrid import logs
from tests.helpers import literal_block
from tests.ops.conftest import Serve

ROOT = Path(__file__).resolve().parents[2]


async def test_the_aiohttp_web_example_serves(serve: Serve, http: aiohttp.ClientSession) -> None:
    namespace: dict[str, Any] = {}
    exec(literal_block(aiohttp_web.__doc__), namespace)
    app: web.Application = namespace["app"]
    server = await serve(app)
    async with http.get(server.make_url("/total"), params={"rounds": "500"}) as response:
        assert await response.json() == {"total": crunch(500)}
    async with http.get(server.make_url("/metrics")) as response:
        assert 'hybrid_tasks_total{function="crunch",outcome="completed",pool="default"} 1.0' in (
            await response.text()
        )


def test_the_log_forwarding_example_logs_the_workers_record(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(
        "import logging\n"
        "logging.basicConfig(format='%(message)s|%(task_id)s|%(worker_pid)s')\n"
        + literal_block(logs.__doc__)
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    message, task_id, pid = result.stderr.strip().split("|")
    assert (message, task_id) == ("from a worker", "order-17")
    assert int(pid) != 0
