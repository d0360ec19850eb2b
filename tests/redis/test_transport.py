"""The messaging layer's Endpoints talking over Redis Streams instead of memory."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from adapters.redis import RedisStreamTransport
from hybrid import TransportClosed
from hybrid.messaging import Codec, DetectorConfig, Endpoint, PeerState, Transport, new_id

from .conftest import PrivateRedis, wait_until

pytestmark = pytest.mark.redis

KEY = b"shared secret"
FAST = DetectorConfig(min_interval_s=0.02, max_beats_per_s=50.0, initial_allowance_s=0.0)
SKEW_NS = 3_000_000_000


async def test_datagrams_arrive_in_order_and_close_wakes_a_pending_receive(
    redis_url: str, prefix: str
) -> None:
    a = RedisStreamTransport(redis_url, "a", prefix=prefix, inbox_maxlen=100)
    b = RedisStreamTransport(redis_url, "b", prefix=prefix)
    assert isinstance(a, Transport)
    await b.start()
    for n in range(3):
        await a.send("b", bytes([n]))
    assert [await b.receive() for _ in range(3)] == [("a", b"\x00"), ("a", b"\x01"), ("a", b"\x02")]
    # The inbox stays bounded however much arrives unread.
    for _ in range(2_000):
        await a.send("b", b"x")
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.xlen(b.inbox_key("b")) < 300
        assert 0 < await client.ttl(b.inbox_key("b")) <= 3600
    finally:
        await client.aclose()

    pending = asyncio.create_task(a.receive())
    await asyncio.sleep(0.05)  # a is blocked in XREAD now
    started = time.monotonic()
    await a.aclose()
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(pending, timeout=5)
    assert time.monotonic() - started < 0.5  # woken at once, not at the end of the BLOCK
    with pytest.raises(TransportClosed):
        await a.send("b", b"late")
    await b.aclose()


async def test_a_new_transport_skips_an_earlier_life_s_mail(redis_url: str, prefix: str) -> None:
    sender = RedisStreamTransport(redis_url, "s", prefix=prefix)
    await sender.send("r", b"old")
    receiver = RedisStreamTransport(redis_url, "r", prefix=prefix)
    await receiver.start()
    await sender.send("r", b"new")
    assert await asyncio.wait_for(receiver.receive(), timeout=5) == ("s", b"new")
    await sender.aclose()
    await receiver.aclose()


async def test_endpoints_over_redis_exchange_signed_messages_and_learn_each_others_clock(
    redis_url: str, prefix: str
) -> None:
    def skewed_ns() -> int:
        return time.time_ns() + SKEW_NS

    a_transport = RedisStreamTransport(redis_url, "a", prefix=prefix)
    b_transport = RedisStreamTransport(redis_url, "b", prefix=prefix)
    await a_transport.start()
    await b_transport.start()
    async with (
        Endpoint(a_transport, key=KEY, config=FAST) as a,
        # Another boot id: b counts as another host, so its (skewed) wall clock matters.
        Endpoint(b_transport, key=KEY, config=FAST, boot_id=new_id(), wall_ns=skewed_ns) as b,
    ):
        a.add_peer("b")
        await a.send("b", "task", body=b"work", deadline_s=5.0)
        message = await asyncio.wait_for(b.receive(), timeout=5)
        assert (message.kind, message.body, message.sender) == ("task", b"work", "a")
        await b.send("a", "result", body=b"done")
        reply = await asyncio.wait_for(a.receive(), timeout=5)
        assert (reply.kind, reply.body, reply.sender) == ("result", b"done", "b")

        await wait_until(lambda: "b" in a.clocks and a.clocks["b"].offset_ns is not None)
        assert a.clocks["b"].offset_ns == pytest.approx(SKEW_NS, abs=50_000_000)
        transit_s = a.clocks["b"].transit.srtt_s
        assert transit_s is not None
        assert 0 < transit_s < 0.5
        assert a.state("b") is PeerState.ALIVE

        # A message signed with another key, written into a's inbox, is rejected.
        mallory = RedisStreamTransport(redis_url, "mallory", prefix=prefix)
        await mallory.send("a", Codec(b"guess").encode(message))
        await mallory.aclose()
        await wait_until(lambda: a.codec.rejections["bad_signature"] == 1)


async def test_a_peer_that_stops_sending_is_judged_dead(redis_url: str, prefix: str) -> None:
    a_transport = RedisStreamTransport(redis_url, "a", prefix=prefix)
    b_transport = RedisStreamTransport(redis_url, "b", prefix=prefix)
    await a_transport.start()
    await b_transport.start()
    async with Endpoint(a_transport, config=FAST) as a:
        b = Endpoint(b_transport, config=FAST)
        await b.__aenter__()
        a.add_peer("b")
        await wait_until(lambda: a.detector("b").observations > 20)
        assert a.state("b") is PeerState.ALIVE
        await b.__aexit__(None, None, None)  # b stops: no beat leaves it any more
        started = time.monotonic()
        await asyncio.wait_for(a.detector("b").wait_for(PeerState.DEAD), timeout=10)
        assert time.monotonic() - started < 3.0


async def test_receive_waits_out_a_redis_restart(private_redis: PrivateRedis) -> None:
    private_redis.start()
    a = RedisStreamTransport(private_redis.url, "a")
    b = RedisStreamTransport(private_redis.url, "b", block_ms=200)
    await b.start()
    await a.send("b", b"before")
    assert await asyncio.wait_for(b.receive(), timeout=5) == ("a", b"before")
    pending = asyncio.create_task(b.receive())
    private_redis.stop()
    await asyncio.sleep(0.5)
    assert not pending.done()  # the outage is waited out, not raised
    with pytest.raises(ConnectionError):
        await a.send("b", b"lost")
    private_redis.start()  # a fresh, empty server: its stream ids start low again
    for _ in range(100):
        try:
            await a.send("b", b"after")
            break
        except ConnectionError:
            await asyncio.sleep(0.05)
    assert await asyncio.wait_for(pending, timeout=10) == ("a", b"after")
    await a.aclose()
    await b.aclose()
