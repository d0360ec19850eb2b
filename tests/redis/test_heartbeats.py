"""Heartbeats through Redis follow what each peer's detector asks, within the budget; nodes
and clients judge each other and see each other's clocks."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis

from adapters.redis import NodeConfig, RedisEngine, WorkerNode
from adapters.redis.liveness import MAX_BEAT_INTERVAL_S, MAX_BEATS_PER_S

from . import tasks
from .conftest import serving, wait_until

pytestmark = pytest.mark.redis

WAIT_S = 30.0


def node_of(url: str, prefix: str) -> WorkerNode:
    return WorkerNode(NodeConfig(url=url, prefix=prefix, modules=("tests.redis.tasks",),
                                 workers=1))  # fmt: skip


async def test_nodes_and_clients_beat_at_what_their_peers_ask(redis_url: str, prefix: str) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    async with (
        serving(node_of(redis_url, prefix)) as first,
        serving(node_of(redis_url, prefix)) as second,
        RedisEngine(redis_url, prefix=prefix, beat_interval_s=0.05) as client,
    ):
        assert await client.run(tasks.add, 1, 2) == 3
        me = f"client:{client.client_id}".encode()
        await wait_until(lambda: len(first.peers()) == 2 and len(client.peers()) == 2, WAIT_S)
        await wait_until(lambda: all(p.asks_of_us_s is not None for p in client.peers()))
        seen = {view.name: view for view in first.peers()}
        assert seen[me].role == "client"
        assert seen[second.name].role == "node"
        assert {view.state for view in seen.values()} <= {"alive", "suspect"}  # a loaded host
        offset_s = seen[me].clock_offset_s
        assert offset_s is not None
        assert abs(offset_s) < 0.5  # one host: the clocks agree
        raw_beats: Any = await raw.hgetall(f"{{{prefix}}}:beats")
        beats = {name: msgpack.unpackb(value) for name, value in raw_beats.items()}
        asked_of_client = [beats[node.name][3][me] for node in (first, second)]
        assert all(asked >= 1 / MAX_BEATS_PER_S - 1e-3 for asked in asked_of_client)  # 3 decimals
        # It started at 20 beats a second; it now beats as the nodes ask, within the budget
        # (the asks move as the detectors learn, so the exact figure may lag one beat).
        assert 1 / MAX_BEATS_PER_S - 1e-9 <= beats[me][1] <= MAX_BEAT_INTERVAL_S
        assert all(beat[1] >= 1 / MAX_BEATS_PER_S - 1e-9 for beat in beats.values())
        assert {view.name for view in client.peers()} == {first.name, second.name}
    await raw.aclose()


async def test_a_peer_that_stops_leaves_the_others_tables(redis_url: str, prefix: str) -> None:
    async with serving(node_of(redis_url, prefix)) as watcher:
        async with serving(node_of(redis_url, prefix)) as doomed:
            await wait_until(lambda: any(p.name == doomed.name for p in watcher.peers()))
        # It stopped cleanly (its beat removed): gone from the table, not judged dead.
        await wait_until(lambda: all(p.name != doomed.name for p in watcher.peers()))
