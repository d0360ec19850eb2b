"""The envelope codec: every field survives the trip; bad input is refused, counted and
never parsed further."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from hybrid import RejectedMessage
from hybrid.messaging import Codec, Echo, Envelope, new_id
from hybrid.messaging.codec import DEFAULT_MAX_BYTES, VERSION

KEY = b"k" * 32


def full_envelope() -> Envelope:
    return Envelope(
        kind="task",
        sender="worker-7",
        seq=41,
        sent_ns=1_700_000_000_123_456_789,
        mono_ns=987_654_321,
        boot_id=new_id(),
        deadline_ns=1_700_000_002_000_000_000,
        echo=Echo(seq=9, sent_ns=1_700_000_000_000_000_001, held_ns=1_500),
        headers={"trace": "abc", "ünï": "cödé"},
        body=b"\x00payload\xff",
    )


@pytest.mark.parametrize("key", [None, KEY])
def test_every_field_round_trips(key: bytes | None) -> None:
    envelope = full_envelope()
    codec = Codec(key)
    assert codec.decode(codec.encode(envelope)) == envelope


def test_optional_fields_may_be_absent_and_the_encoding_is_compact() -> None:
    bare = Envelope(kind="hb", sender="a", seq=1, sent_ns=1, mono_ns=2, boot_id=new_id())
    data = Codec().encode(bare)
    assert Codec().decode(data) == bare
    assert len(data) < 80


def rejected(codec: Codec, data: bytes) -> str:
    with pytest.raises(RejectedMessage) as info:
        codec.decode(data)
    return info.value.reason


def test_rejections_are_counted_by_reason() -> None:
    signer, plain = Codec(KEY), Codec()
    signed = signer.encode(full_envelope())
    receiver = Codec(KEY, max_bytes=4096)
    tampered = bytearray(signed)
    tampered[40] ^= 0x01
    other_version = bytes([*signed[:2], VERSION + 1, *signed[3:]])
    assert rejected(receiver, plain.encode(full_envelope())) == "unsigned"
    assert rejected(receiver, bytes(tampered)) == "bad_signature"
    assert rejected(receiver, signed[:30]) == "truncated"
    assert rejected(receiver, signed[:-1]) == "bad_signature"
    assert rejected(receiver, b"x" * 5000) == "oversized"
    assert rejected(receiver, other_version) == "unknown_version"
    assert rejected(receiver, b"GET / HTTP/1.1\r\n") == "bad_magic"
    assert receiver.rejections == {
        "unsigned": 1,
        "bad_signature": 2,
        "truncated": 1,
        "oversized": 1,
        "unknown_version": 1,
        "bad_magic": 1,
    }


def test_a_wrong_key_is_a_bad_signature() -> None:
    data = Codec(b"other key").encode(full_envelope())
    assert rejected(Codec(KEY), data) == "bad_signature"


def test_unsigned_truncation_is_reported_as_truncated() -> None:
    data = Codec().encode(full_envelope())
    codec = Codec()
    for cut in (3, 20, 60, len(data) - 1):
        assert rejected(codec, data[:cut]) == "truncated"
    assert codec.rejections["truncated"] == 4


def test_trailing_bytes_are_malformed() -> None:
    assert rejected(Codec(), Codec().encode(full_envelope()) + b"!") == "malformed"


def test_encode_refuses_what_the_format_cannot_carry() -> None:
    codec = Codec(max_bytes=200)
    with pytest.raises(ValueError, match="max_bytes"):
        codec.encode(dataclasses.replace(full_envelope(), body=b"x" * 500))
    with pytest.raises(ValueError, match="wire format"):
        codec.encode(dataclasses.replace(full_envelope(), kind="k" * 300))
    with pytest.raises(ValueError, match="16 bytes"):
        codec.encode(dataclasses.replace(full_envelope(), boot_id=b"short"))


SIGNED_SAMPLE = Codec(KEY).encode(full_envelope())
PLAIN_SAMPLE = Codec().encode(full_envelope())


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    mutated = bytearray(data)
    for position, value in edits:
        mutated[position % len(mutated)] = value
    return bytes(mutated[: max(0, len(mutated) - cut)])


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            mutate,
            st.sampled_from([SIGNED_SAMPLE, PLAIN_SAMPLE]),
            st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
            st.integers(0, 40),
        ),
    ),
    st.booleans(),
)
def test_fuzzed_input_only_ever_raises_our_rejection(data: bytes, keyed: bool) -> None:
    codec = Codec(KEY if keyed else None, max_bytes=DEFAULT_MAX_BYTES)
    reason = None
    try:
        envelope = codec.decode(data)
    except RejectedMessage as error:  # the only exception allowed out
        reason = error.reason
    if reason is None:
        assert isinstance(envelope, Envelope)
        assert sum(codec.rejections.values()) == 0
    else:
        assert codec.rejections == {reason: 1}
