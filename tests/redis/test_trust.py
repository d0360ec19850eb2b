"""With a secret, nothing forged is accepted: results, rejections, replays, beats; an empty
secret is refused at start, and no log line shows a password."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis

from adapters.redis import RedisEngine
from adapters.redis.codec import encode_result
from adapters.redis.liveness import PeerTable, beat_value, redis_detector

from . import tasks
from .conftest import ROOT, Node, free_port, wait_for, wait_until

pytestmark = pytest.mark.redis

SECRET = "trust-secret"
WAIT_S = 30.0


async def job_entries(
    raw: aioredis.Redis, prefix: str, count: int = 1
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The job stream's entries, once it holds ``count`` of them (what anyone can read)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            entries: Any = await raw.xrange(f"{{{prefix}}}:jobs")
            if len(entries) >= count:
                return [(bytes(entry_id), fields) for entry_id, fields in entries]
            await asyncio.sleep(0.02)


async def test_job_ids_are_128_random_bits(redis_url: str, prefix: str) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    async with RedisEngine(redis_url, prefix=prefix, secret=SECRET) as engine:
        calls = [asyncio.create_task(engine.run(tasks.add, i, i)) for i in range(3)]
        await wait_until(lambda: engine.stats()["submitted"] == 3)
        await wait_until(lambda: engine.stats()["outstanding"] == 3)
        entries = await job_entries(raw, prefix, 3)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    await raw.aclose()
    ids = [fields[b"j"] for _, fields in entries]
    assert len(set(ids)) == 3
    assert all(re.fullmatch(rb"[0-9a-f]{32}", job_id) for job_id in ids)
    assert not any(engine.client_id.encode() in job_id for job_id in ids)


async def test_an_unsigned_result_is_not_taken_for_the_genuine_one(
    redis_url: str, prefix: str, start_node: Callable[..., Node]
) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    async with RedisEngine(redis_url, prefix=prefix, secret=SECRET) as engine:
        call = asyncio.create_task(engine.run(tasks.add, 2, 3))
        entries = await job_entries(raw, prefix)
        fields = entries[0][1]
        forged = encode_result(fields[b"j"], [[1, 666]], b"m", None)  # no key: unsigned
        await raw.xadd(fields[b"r"], forged)  # type: ignore[arg-type]
        wrong_key = encode_result(fields[b"j"], [[1, 667]], b"m", b"another key")
        await raw.xadd(fields[b"r"], wrong_key)  # type: ignore[arg-type]
        start_node(env={"HYBRID_SECRET": SECRET})
        assert await asyncio.wait_for(call, WAIT_S) == 5
    await raw.aclose()


async def test_a_spoofed_entry_cannot_fail_another_clients_job(
    redis_url: str, prefix: str, start_node: Callable[..., Node]
) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    async with RedisEngine(redis_url, prefix=prefix, secret=SECRET) as engine:
        call = asyncio.create_task(engine.run(tasks.add, 20, 22))
        entries = await job_entries(raw, prefix)
        genuine = entries[0][1]
        # Unsigned, naming the victim's reply stream and job id: a node must not answer it.
        spoof = {k: v for k, v in genuine.items() if k != b"s"}
        await raw.xadd(f"{{{prefix}}}:jobs", spoof)  # type: ignore[arg-type]
        node = start_node(env={"HYBRID_SECRET": SECRET})
        assert await asyncio.wait_for(call, WAIT_S) == 42
        await wait_until(lambda: "dead-lettered" in node.text())
    letters: Any = await raw.xrange(f"{{{prefix}}}:dead")
    await raw.aclose()
    assert [fields[b"dl:reason"] for _, fields in letters] == [b"unsigned"]


async def test_a_replayed_signed_job_runs_once(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    path = tmp_path / "runs.txt"
    async with RedisEngine(redis_url, prefix=prefix, secret=SECRET) as engine:
        call = asyncio.create_task(engine.run(tasks.record, str(path), 7, 0.0))
        entries = await job_entries(raw, prefix)
        copied = entries[0][1]  # what anyone who can read the stream can copy
        node = start_node(env={"HYBRID_SECRET": SECRET})
        assert await asyncio.wait_for(call, WAIT_S) == 7
        for _ in range(2):
            await raw.xadd(f"{{{prefix}}}:jobs", copied)  # type: ignore[arg-type]
        await wait_until(lambda: node.text().count("replay: this job id") >= 2)
    await raw.aclose()
    assert [line.split()[0] for line in path.read_text().splitlines()] == ["7"]


def test_a_beat_that_does_not_verify_is_ignored() -> None:
    table = PeerTable(lambda role: redis_detector(0.2, 0.8))
    secret = b"beats"
    signed = beat_value(10**18, 0.2, "node", secret, b"node-a")
    unsigned = beat_value(10**18, 0.2, "node")
    stolen = beat_value(10**18, 0.2, "node", secret, b"node-a")  # replayed under another name
    table.update({b"node-a": signed, b"node-b": unsigned, b"node-c": stolen}, 1e9, secret)
    assert set(table.peers) == {b"node-a"}
    packed = msgpack.unpackb(msgpack.packb(signed))
    table.update({b"node-d": packed}, 1e9, secret)
    assert set(table.peers) == {b"node-a"}


async def test_an_empty_secret_is_an_error_at_start(redis_url: str, prefix: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        RedisEngine(redis_url, prefix=prefix, secret="")
    done = subprocess.run(
        [sys.executable, "-m", "adapters.redis", "--redis", redis_url, "--prefix", prefix,
         "--import", "tests.redis.tasks"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env(HYBRID_SECRET=""),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hybrid worker: HYBRID_SECRET (or secret=) is set but empty: give a long random key,"
        " or unset it"
    ]


def test_no_log_line_shows_the_password(start_node: Callable[..., Node]) -> None:
    url = f"redis://app:hunter2-very-secret@127.0.0.1:{free_port()}/0"  # nobody listens
    node = start_node(url=url, wait=False)
    wait_for(lambda: "waiting for Redis at" in node.text())
    assert "waiting for Redis at redis://***@127.0.0.1" in node.text()
    assert "hunter2" not in node.text()


def _env(**changes: str) -> dict[str, str]:
    return {**os.environ, **changes}
