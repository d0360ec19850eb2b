"""What peers send cannot grow an endpoint without bound, and dead strangers are forgotten."""

from __future__ import annotations

import asyncio
import time

from hybrid.messaging import Codec, DetectorConfig, Endpoint, Envelope, InMemoryNetwork, new_id

KEY = b"bounds key"
FAST = DetectorConfig(min_interval_s=0.02, max_beats_per_s=50.0, initial_allowance_s=0.0)


def message_from(sender: str, key: bytes | None = None, seq: int = 1) -> bytes:
    now_ns = time.time_ns()
    envelope = Envelope(
        kind="hello", sender=sender, seq=seq, sent_ns=now_ns, mono_ns=time.monotonic_ns(),
        boot_id=new_id(), deadline_ns=None, echo=None, headers={}, body=b"",
    )  # fmt: skip
    return Codec(key).encode(envelope)


def test_twenty_thousand_forged_senders_fill_at_most_max_peers() -> None:
    endpoint = Endpoint(InMemoryNetwork().connect("a"), max_peers=100)
    endpoint.add_peer("friend")
    accepted = sum(endpoint.accept(message_from(f"forged-{n}")) is not None for n in range(20_000))
    assert accepted == 99  # the friend holds one place of the 100
    assert endpoint.refused_peers == 20_000 - 99
    assert len(endpoint.peers.states(time.monotonic())) == 100
    assert len(endpoint.clocks) <= 100
    assert endpoint.accept(message_from("friend")) is not None  # a known peer still heard


def test_with_a_key_unsigned_senders_take_no_place_at_all() -> None:
    endpoint = Endpoint(InMemoryNetwork().connect("a"), key=KEY, max_peers=10)
    for n in range(1000):
        assert endpoint.accept(message_from(f"forged-{n}")) is None
    assert endpoint.peers.states(time.monotonic()) == {}
    assert endpoint.accept(message_from("b", KEY)) is not None


async def test_a_learned_peer_dead_long_enough_is_forgotten_and_its_place_freed() -> None:
    endpoint = Endpoint(
        InMemoryNetwork().connect("a"), config=FAST, max_peers=2, forget_after_s=0.0
    )
    endpoint.add_peer("chosen")
    assert endpoint.accept(message_from("stranger")) is not None
    assert endpoint.accept(message_from("newcomer")) is None  # full
    async with asyncio.timeout(10):
        while "stranger" in endpoint.clocks:  # it falls silent: DEAD, then forgotten
            await endpoint.tick()
            await asyncio.sleep(0.02)
    assert set(endpoint.peers.states(time.monotonic())) == {"chosen"}  # one it added stays
    assert endpoint.accept(message_from("newcomer")) is not None
