"""Redis ACL credentials in the URL: the client and a worker node log in with them."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest
import redis
from redis.exceptions import AuthenticationError

from adapters.redis import RedisEngine

from . import tasks
from .conftest import ACL_PASSWORD, ACL_USER, Node, PrivateRedis

pytestmark = pytest.mark.redis


def acl_url(server: PrivateRedis, password: str) -> str:
    return f"redis://{ACL_USER}:{quote(password, safe='')}@127.0.0.1:{server.port}/0"


async def test_client_and_node_run_a_job_with_acl_credentials(
    acl_redis: PrivateRedis, prefix: str, start_node: Callable[..., Node]
) -> None:
    url = acl_url(acl_redis, ACL_PASSWORD)
    node = start_node(url=url)
    async with RedisEngine(url, prefix=prefix) as engine:
        assert await engine.run(tasks.add, 2, 3) == 5
        assert [y async for y in engine.map(tasks.noop, range(20))] == list(range(20))
    assert node.stop() == 0
    assert node.counters()["completed"] >= 2


async def test_a_wrong_password_fails_at_once_with_one_clear_error(
    acl_redis: PrivateRedis, prefix: str
) -> None:
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as wrong:
        async with RedisEngine(acl_url(acl_redis, "wrong password"), prefix=prefix):
            pass
    assert str(wrong.value) == "invalid username-password pair or user is disabled."
    with pytest.raises(AuthenticationError, match="Authentication required"):
        async with RedisEngine(acl_redis.url, prefix=prefix):  # no credentials at all
            pass
    assert time.monotonic() - started < 5.0  # refused, not retried as if Redis were down


def test_a_worker_node_with_a_wrong_password_exits_with_one_clear_line(
    acl_redis: PrivateRedis, prefix: str
) -> None:
    # Regression: redis-py's AuthenticationError is one of its ConnectionErrors, and the
    # node retried it forever as if Redis were down, saying nothing.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybrid",
            "worker",
            "--redis",
            acl_url(acl_redis, "wrong"),
            "--import",
            "tests.redis.tasks",
            "--prefix",
            prefix,
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert result.returncode == 2
    assert "Redis refused the credentials in --redis" in result.stderr
    assert "Traceback" not in result.stderr


REVOCATIONS = {
    # What an administrator does, then kicks the user's open connections (Redis keeps
    # those logged in otherwise).
    "password changed": [["ACL", "SETUSER", ACL_USER, "resetpass", ">new password"]],
    "user disabled": [["ACL", "SETUSER", ACL_USER, "off"]],
    # Takes effect on the open connections at once: NOPERM on the next command.
    "permissions revoked": [["ACL", "SETUSER", ACL_USER, "-@all"]],
}


@pytest.mark.parametrize("revocation", list(REVOCATIONS))
async def test_credentials_revoked_while_a_node_runs_stop_it_with_one_clear_line(
    acl_redis: PrivateRedis, prefix: str, start_node: Callable[..., Node], revocation: str
) -> None:
    # Regression: a node whose credentials were revoked retried as if Redis were down,
    # forever and silently, instead of saying so and exiting.
    url = acl_url(acl_redis, ACL_PASSWORD)
    node = start_node(url=url)
    async with RedisEngine(url, prefix=prefix) as engine:
        assert await engine.run(tasks.add, 2, 3) == 5
    # The app user may run ACL itself (+@all); a second admin acts after it is revoked.
    revoke = [["ACL", "SETUSER", "admin", "on", ">admin", "~*", "+@all"]]
    revoke += REVOCATIONS[revocation]
    if revocation != "permissions revoked":
        revoke.append(["CLIENT", "KILL", "USER", ACL_USER])
    for user, password, command in [
        (ACL_USER, ACL_PASSWORD, revoke[0]),
        *(("admin", "admin", command) for command in revoke[1:]),
    ]:
        with redis.Redis(port=acl_redis.port, username=user, password=password) as admin:
            admin.execute_command(*command)
    assert node.process.wait(30) == 2
    refused = [line for line in node.text().splitlines() if "refused" in line]
    assert len(refused) == 1, node.text()
    assert refused[0].startswith("hybrid worker: Redis refused the credentials in --redis: ")
    assert re.search(r"(user is disabled\.|no permissions to run the '\w+' command)$", refused[0])
    assert "Traceback" not in node.text()
