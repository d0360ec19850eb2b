"""Fixtures for the operations tests: real aiohttp servers on 127.0.0.1 and a client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.ops.test_logs import Collect

Serve = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start apps on 127.0.0.1 (startup runs their engines); close them at teardown."""
    servers: list[TestServer] = []

    async def start(app: web.Application, **runner_options: Any) -> TestServer:
        server = TestServer(app, host="127.0.0.1", **runner_options)
        servers.append(server)
        await server.start_server()
        return server

    yield start
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
def collected() -> Iterator[Collect]:
    """Records that reach the parent's ``tests.ops.worker`` logger (from any process)."""
    handler = Collect()
    target = logging.getLogger("tests.ops.worker")
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    yield handler
    target.removeHandler(handler)
    target.setLevel(logging.NOTSET)
