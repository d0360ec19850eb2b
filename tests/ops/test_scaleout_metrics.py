"""Messaging and Redis figures on /metrics: a real node, real peers, a real Redis, parsed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from adapters import aiohttp_web
from adapters.redis import JobRejected, NodeConfig, RedisEngine, RedisStreamTransport, WorkerNode
from hybrid.messaging import DetectorConfig, Endpoint, new_id
from tests.ops import worker_tasks
from tests.ops.conftest import Serve
from tests.ops.test_metrics import scrape, value
from tests.redis import tasks
from tests.redis.conftest import delete_keys, wait_until

pytestmark = pytest.mark.redis

FAST = DetectorConfig(min_interval_s=0.02, max_beats_per_s=50.0, initial_allowance_s=1.0)
SKEW_NS = 2_000_000_000
WAIT_S = 30.0


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = f"test-ops-{uuid.uuid4().hex[:12]}"
    yield name
    await delete_keys(redis_url, name)


async def test_peer_figures_are_scraped_from_endpoints_talking_over_redis(
    serve: Serve, http: aiohttp.ClientSession, redis_url: str, prefix: str
) -> None:
    app = web.Application()
    aiohttp_web.setup(app, workers=1, metrics=True)
    server = await serve(app)

    def skewed_ns() -> int:
        return time.time_ns() + SKEW_NS

    a_transport = RedisStreamTransport(redis_url, "a", prefix=prefix)
    b_transport = RedisStreamTransport(redis_url, "b", prefix=prefix)
    await a_transport.start()
    await b_transport.start()
    async with (
        Endpoint(a_transport, config=FAST) as a,
        # Another boot id: b counts as another host, so a must estimate b's clock.
        Endpoint(b_transport, config=FAST, boot_id=new_id(), wall_ns=skewed_ns) as b,
    ):
        aiohttp_web.get_metrics(app).watch_peers(a)
        aiohttp_web.get_metrics(app).watch_peers(b)
        a.add_peer("b")
        await wait_until(lambda: a.detector("b").observations >= 5, WAIT_S)
        await wait_until(lambda: b.detector("a").observations >= 5, WAIT_S)
        samples = await scrape(http, str(server.make_url("/metrics")))

    ab = {"endpoint": "a", "peer": "b"}
    offset_s = value(samples, "hybrid_peer_clock_offset_seconds", **ab)
    assert offset_s == pytest.approx(SKEW_NS / 1e9, abs=0.05)
    assert 0 <= value(samples, "hybrid_peer_round_trip_seconds", **ab) < 0.5
    assert 0 < value(samples, "hybrid_peer_transit_seconds", **ab, quantile="0.99") < 0.5
    assert 0 < value(samples, "hybrid_peer_transit_smoothed_seconds", **ab) < 0.5
    ba_offset_s = value(samples, "hybrid_peer_clock_offset_seconds", endpoint="b", peer="a")
    assert ba_offset_s == pytest.approx(-SKEW_NS / 1e9, abs=0.05)
    interval_s = value(samples, "hybrid_peer_heartbeat_interval_seconds", **ab)
    assert FAST.shortest_interval_s <= interval_s <= FAST.max_interval_s
    assert value(samples, "hybrid_peer_messages_total", **ab) >= 5
    assert value(samples, "hybrid_peer_state", **ab, hybrid_peer_state="alive") == 1
    assert value(samples, "hybrid_peer_state", **ab, hybrid_peer_state="dead") == 0
    assert value(samples, "hybrid_peer_dead_margin_seconds", **ab) > 0


async def test_redis_figures_show_pending_redelivered_and_dead_lettered_entries(
    serve: Serve, http: aiohttp.ClientSession, redis_url: str, prefix: str
) -> None:
    app = web.Application()
    aiohttp_web.setup(app, workers=1, metrics=True)
    server = await serve(app)
    url = str(server.make_url("/metrics"))
    node = WorkerNode(
        NodeConfig(
            url=redis_url, prefix=prefix, modules=("tests.redis.tasks",), workers=1, lease_s=0.3
        )
    )
    stop = asyncio.Event()
    raw = aioredis.Redis.from_url(redis_url)
    jobs = node.keys.jobs
    async with RedisEngine(redis_url, prefix=prefix) as client:
        collector = aiohttp_web.get_metrics(app).watch_redis(
            redis_url, prefix, nodes=(node,), clients=(client,)
        )
        try:
            # A consumer that takes an entry and vanishes: the node must redeliver it.
            await raw.xgroup_create(jobs, "workers", id="0", mkstream=True)
            job = asyncio.create_task(client.run(tasks.add, 2, 3))
            await wait_until(lambda: client.stats()["submitted"] == 1, WAIT_S)
            await _take_as(raw, jobs, "ghost")
            samples = await scrape(http, url)
            assert value(samples, "hybrid_redis_pending", prefix=prefix) == 1
            assert value(samples, "hybrid_redis_consumer_pending", prefix=prefix,
                         consumer="ghost") == 1  # fmt: skip
            assert value(samples, "hybrid_redis_client_jobs_outstanding", prefix=prefix,
                         client=client.client_id) == 1  # fmt: skip

            serving = asyncio.create_task(node.serve(stop))
            assert await asyncio.wait_for(job, WAIT_S) == 5
            with pytest.raises(JobRejected, match="unknown task"):
                await asyncio.wait_for(client.run(worker_tasks.log_lines, 1), WAIT_S)
            assert await asyncio.wait_for(client.run(tasks.add, 1, 1), WAIT_S) == 2
            await wait_until(lambda: node.counters["completed"] == 2, WAIT_S)
            client_beat = f"client:{client.client_id}".encode()
            await wait_until(lambda: any(p.name == client_beat for p in node.peers()), WAIT_S)
            await wait_until(lambda: bool(client.peers()), WAIT_S)
            samples = await scrape(http, url)
        finally:
            stop.set()
            await collector.aclose()
            await raw.aclose()
    await asyncio.wait_for(serving, WAIT_S)

    node_labels = {"prefix": prefix, "node": node.name.decode()}
    assert value(samples, "hybrid_redis_redeliveries_total", **node_labels) == 1
    assert value(samples, "hybrid_redis_dead_lettered_total", **node_labels) == 1
    assert value(samples, "hybrid_redis_node_jobs_completed_total", **node_labels) == 2
    assert value(samples, "hybrid_redis_dead_letters", prefix=prefix) == 1
    assert value(samples, "hybrid_redis_pending", prefix=prefix) == 0
    assert value(samples, "hybrid_redis_consumers", prefix=prefix) >= 1
    seen = {"prefix": prefix, "local": node.name.decode(),
            "peer": f"client:{client.client_id}", "role": "client"}  # fmt: skip
    verdicts = {
        state: value(samples, "hybrid_redis_peer_state", **seen, hybrid_redis_peer_state=state)
        for state in ("alive", "suspect", "dead")
    }
    assert sum(verdicts.values()) == 1  # one verdict
    assert verdicts["dead"] == 0  # it beats: at worst suspected on a loaded host
    assert abs(value(samples, "hybrid_redis_peer_clock_offset_seconds", **seen)) < 0.5
    assert value(samples, "hybrid_redis_peer_heartbeat_interval_seconds", **seen) >= 1 / 3 - 1e-9
    by_client = {"prefix": prefix, "local": f"client:{client.client_id}",
                 "peer": node.name.decode(), "role": "node"}  # fmt: skip
    assert value(samples, "hybrid_redis_peer_state", **by_client,
                 hybrid_redis_peer_state="dead") == 0  # fmt: skip
    client_labels = {"prefix": prefix, "client": client.client_id}
    assert value(samples, "hybrid_redis_client_jobs_submitted_total", **client_labels) == 3
    assert value(samples, "hybrid_redis_client_jobs_outstanding", **client_labels) == 0


async def _take_as(raw: aioredis.Redis, jobs: bytes, consumer: str) -> None:
    """Read one entry as ``consumer`` and never ack it (a node that died holding it)."""
    block_ms = int(WAIT_S * 1000)
    taken = await raw.xreadgroup("workers", consumer, {jobs: ">"}, count=1, block=block_ms)
    assert taken, "the job never reached the stream"
