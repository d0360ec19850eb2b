"""Transports, and endpoints talking over them: in memory and through injected faults."""

from __future__ import annotations

import asyncio
import time

import pytest

from hybrid import TransportClosed, UnknownPeer
from hybrid.messaging import (
    Codec,
    DetectorConfig,
    Endpoint,
    FaultPlan,
    FaultyTransport,
    InMemoryNetwork,
    PeerState,
    Transport,
    new_id,
)

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py

KEY = b"shared secret"
FAST = DetectorConfig(min_interval_s=0.02, max_beats_per_s=50.0, initial_allowance_s=0.0)


async def test_in_memory_transport_delivers_in_order_and_closes() -> None:
    network = InMemoryNetwork()
    a, b = network.connect("a"), network.connect("b")
    assert isinstance(a, Transport)
    for n in range(3):
        await a.send("b", bytes([n]))
    assert [await b.receive() for _ in range(3)] == [("a", b"\x00"), ("a", b"\x01"), ("a", b"\x02")]
    with pytest.raises(UnknownPeer):
        await a.send("nobody", b"x")
    pending = asyncio.create_task(b.receive())
    await asyncio.sleep(0)
    await b.aclose()
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(pending, timeout=5)
    with pytest.raises(ValueError, match="already connected"):
        network.connect("a")


async def test_faulty_transport_delays_and_drops() -> None:
    network = InMemoryNetwork()
    plan = FaultPlan(latency_s=0.05, jitter_s=0.01, loss=0.5, seed=7)
    sender = FaultyTransport(network.connect("a"), plan)
    receiver = network.connect("b")
    started = time.monotonic()
    for n in range(40):
        await sender.send("b", bytes([n]))
    received: list[tuple[str, bytes]] = []
    while len(received) < 40 - sender.dropped:
        received.append(await asyncio.wait_for(receiver.receive(), timeout=5))
    assert time.monotonic() - started >= 0.04
    assert 5 < sender.dropped < 35
    await sender.aclose()
    await receiver.aclose()


async def test_faulty_transport_stalls_and_skews() -> None:
    network = InMemoryNetwork()
    plan = FaultPlan(clock_offset_s=3.0, clock_drift_ppm=20.0)
    a, b = FaultyTransport(network.connect("a"), plan), FaultyTransport(network.connect("b"))
    assert a.clock.time_ns() - time.time_ns() == pytest.approx(3e9, abs=0.05e9)
    a.stall_sender(0.2)
    started = time.monotonic()
    await a.send("b", b"late")
    assert time.monotonic() - started >= 0.19
    b.stall_receiver(0.2)
    await a.send("b", b"held")
    started = time.monotonic()
    assert (await asyncio.wait_for(b.receive(), timeout=5))[1] == b"late"
    assert time.monotonic() - started >= 0.19
    await a.aclose()
    await b.aclose()


async def until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_endpoints_exchange_signed_messages_and_learn_each_others_clock() -> None:
    network = InMemoryNetwork()
    skewed = FaultyTransport(network.connect("b"), FaultPlan(latency_s=0.005, clock_offset_s=3.0))
    async with (
        Endpoint(network.connect("a"), key=KEY, config=FAST) as a,
        Endpoint(skewed, key=KEY, config=FAST, boot_id=new_id(), wall_ns=skewed.clock.time_ns) as b,
    ):
        a.add_peer("b")
        await a.send("b", "task", body=b"work", deadline_s=5.0)
        message = await asyncio.wait_for(b.receive(), timeout=5)
        assert (message.kind, message.body, message.sender) == ("task", b"work", "a")
        await until(lambda: "b" in a.clocks and a.clocks["b"].offset_ns is not None)
        offset_ns = a.clocks["b"].offset_ns
        assert offset_ns == pytest.approx(3e9, abs=0.03e9)
        transit_s = a.clocks["b"].transit.srtt_s
        assert transit_s is not None
        assert 0 < transit_s < 0.5  # about the 5 ms injected: the 3 s clock offset is not transit
        assert a.state("b") is PeerState.ALIVE
        # A forged message is counted and never reaches the application.
        await network.connect("mallory").send("a", Codec(b"guess").encode(message))
        await until(lambda: a.codec.rejections["bad_signature"] == 1)


async def test_same_host_endpoints_time_each_other_on_the_monotonic_clock() -> None:
    network = InMemoryNetwork()
    skewed = FaultyTransport(network.connect("b"), FaultPlan(clock_offset_s=3.0))
    async with (
        Endpoint(network.connect("a"), config=FAST) as a,
        Endpoint(skewed, config=FAST, wall_ns=skewed.clock.time_ns) as b,
    ):
        await b.send("a", "hello")
        await asyncio.wait_for(a.receive(), timeout=5)
        clock = a.clocks["b"]
        assert clock.same_host  # both read this host's boot id
        assert clock.offset_ns == 0  # the skewed wall clock does not matter
        transit_s = clock.transit.srtt_s
        assert transit_s is not None
        assert 0 <= transit_s < 0.5


async def test_an_endpoint_that_stops_is_declared_dead_and_its_expired_work_dropped() -> None:
    network = InMemoryNetwork()
    b_transport = FaultyTransport(network.connect("b"), FaultPlan(latency_s=0.002))
    async with Endpoint(network.connect("a"), config=FAST) as a:
        b = Endpoint(b_transport, config=FAST)
        await b.__aenter__()
        a.add_peer("b")
        await until(lambda: a.detector("b").observations > 20)
        b_transport.stall_sender(60.0)  # b's process is paused: it sends nothing more
        started = time.monotonic()
        await asyncio.wait_for(a.detector("b").wait_for(PeerState.DEAD), timeout=10)
        assert time.monotonic() - started < 2.0
        await b.__aexit__(None, None, None)
    # Work whose deadline passed in transit is dropped, not delivered.
    network = InMemoryNetwork()
    slow = FaultyTransport(network.connect("s"), FaultPlan(latency_s=0.2))
    async with Endpoint(network.connect("r")) as receiver, Endpoint(slow) as sender:
        await sender.send("r", "task", deadline_s=0.05)
        await sender.send("r", "task", deadline_s=5.0)
        kept = await asyncio.wait_for(receiver.receive(), timeout=5)
        assert kept.deadline_ns is not None
        assert receiver.deadlines.expired == 1


async def test_a_peer_that_left_does_not_stop_the_heartbeats_to_others() -> None:
    network = InMemoryNetwork()
    async with Endpoint(network.connect("a"), config=FAST) as a:
        gone = network.connect("gone")
        async with Endpoint(network.connect("c"), config=FAST) as c:
            a.add_peer("gone")
            a.add_peer("c")
            await gone.aclose()  # sending to it now raises UnknownPeer
            before = c.detector("a").observations
            await until(lambda: c.detector("a").observations > before + 5)
            assert c.state("a") is PeerState.ALIVE


class CancellationSwallowingTransport:
    """Returns normally from a cancelled receive, as a redis-py call can on Python 3.11:
    redis-py times its sends with ``asyncio.wait_for``, which there returns the result
    when the task is cancelled just as the send completes."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.swallowing = True

    @property
    def address(self) -> str:
        return self.inner.address

    async def send(self, destination: str, data: bytes) -> None:
        await self.inner.send(destination, data)

    async def receive(self) -> tuple[str, bytes]:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if not self.swallowing:
                raise
        return "elsewhere", b"not an envelope"

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_endpoint_stops_when_its_transport_swallows_the_cancellation() -> None:
    """Regression: Endpoint's loops stopped on cancellation alone, so a transport that
    swallowed it kept them going and leaving the endpoint hung (a CI run over Redis)."""
    transport = CancellationSwallowingTransport(InMemoryNetwork().connect("a"))
    endpoint = Endpoint(transport, KEY, config=FAST)
    await endpoint.__aenter__()
    await asyncio.sleep(0.05)  # the receive loop is waiting in the transport
    closing = asyncio.ensure_future(endpoint.__aexit__(None, None, None))
    done, _ = await asyncio.wait({closing}, timeout=5)
    transport.swallowing = False
    if not done:  # let the test fail rather than hang
        for task in endpoint._tasks:
            task.cancel()
        await closing
    assert done, "the endpoint did not stop"
    assert sum(endpoint.codec.rejections.values()) > 0  # its receive loop ran, and got junk
