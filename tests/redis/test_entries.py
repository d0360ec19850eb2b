"""Entries written straight into the stream: bad ones are dead-lettered with the reason,
never run or unpickled; the stream is trimmed only below what was acknowledged."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.redis import RedisEngine
from adapters.redis.codec import encode_job, sign

from . import tasks
from .conftest import Node, wait_for_length

pytestmark = pytest.mark.redis

SECRET = "entries-secret"
TRIM_INTERVAL_S = 0.1  # the node's --trim-interval, shortened from 2 s so the test waits less
TRIM_WAIT_S = 1.0  # several trim passes (the node trims at most once per 0.2 s beat)


class CreatesFileWhenUnpickled:
    """A payload that would create a file if anyone unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def bad_entries(prefix: str, marker: Path) -> dict[str, dict[bytes, bytes]]:
    reply = f"{{{prefix}}}:reply:attacker".encode()
    good = encode_job(
        b"j1", "tests.redis.tasks:add", [(1, 2)], reply_key=reply, codec=b"m",
        secret=SECRET.encode(), timeout_s=None, deadline_ns=None,
    )  # fmt: skip
    evil = {
        b"v": b"1", b"j": b"j2", b"f": b"tests.redis.tasks:echo", b"c": b"p", b"r": reply,
        b"a": pickle.dumps([[CreatesFileWhenUnpickled(str(marker))]]),
    }  # fmt: skip
    tampered = dict(good)
    tampered[b"a"] = good[b"a"][:-1] + b"\x07"
    wrong_key = dict(evil)
    wrong_key[b"s"] = sign(evil, b"another key")
    return {
        "unsigned": {k: v for k, v in good.items() if k != b"s"},
        "unsigned pickle": evil,
        "bad signature": tampered,
        "signed with another key": wrong_key,
        "oversized": {**good, b"a": b"x" * 20_000},
        "unknown format": {b"hello": b"world"},
    }


async def test_bad_entries_are_dead_lettered_with_the_reason(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    node = start_node("--max-entry-bytes", "10000", env={"HYBRID_SECRET": SECRET})
    marker = tmp_path / "unpickled"
    client = aioredis.Redis.from_url(redis_url)
    jobs, dead = f"{{{prefix}}}:jobs", f"{{{prefix}}}:dead"
    try:
        entries = bad_entries(prefix, marker)
        for fields in entries.values():
            await client.xadd(jobs, fields)  # type: ignore[arg-type]
        async with RedisEngine(redis_url, prefix=prefix, secret=SECRET) as engine:
            assert await engine.run(tasks.add, 1, 2) == 3
        letters: Any = await client.xrange(dead)
        reasons = [fields[b"dl:reason"].decode() for _, fields in letters]
        assert len(reasons) == len(entries)
        for expected in ("unsigned", "unsigned", "bad signature", "bad signature", "oversized",
                         "unknown format version"):  # fmt: skip
            assert any(reason.startswith(expected) for reason in reasons), reasons
        summary = await client.xpending(jobs, "workers")
        assert summary["pending"] == 0
    finally:
        await client.aclose()
    assert not marker.exists()
    assert node.stop() == 0
    assert node.counters()["dead_lettered"] == len(entries)


async def test_trimming_keeps_what_is_not_yet_acknowledged(
    redis_url: str, prefix: str, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    # One worker runs the long task, the other the quick ones.
    start_node("--workers", "2", "--trim-interval", str(TRIM_INTERVAL_S))
    client = aioredis.Redis.from_url(redis_url)
    jobs = f"{{{prefix}}}:jobs"
    try:
        async with RedisEngine(redis_url, prefix=prefix) as engine:
            await asyncio.gather(*(engine.run(tasks.noop, i) for i in range(100)))
            # Long enough to be pending through the 100 quick jobs and several trim passes.
            long_job = asyncio.create_task(engine.run(tasks.record, str(tmp_path / "r"), 1, 4.0))
            await asyncio.sleep(0.2)
            await asyncio.gather(*(engine.run(tasks.noop, i) for i in range(100)))
            await asyncio.sleep(TRIM_WAIT_S)
            # The 100 entries before the pending one are gone; it and those after stay.
            assert await client.xlen(jobs) == 101
            pending = await client.xpending(jobs, "workers")
            assert pending["pending"] == 1
            assert await client.xrange(jobs, pending["min"], pending["min"])
            assert await long_job == 1
            await wait_for_length(client, jobs, 0)
            assert await client.xlen(jobs) == 0
    finally:
        await client.aclose()
