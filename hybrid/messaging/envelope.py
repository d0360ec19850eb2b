"""The envelope every message travels in: who sent it, when, and what it echoes back."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

ID_BYTES = 16  # message ids and boot ids are 128-bit random values


def new_id() -> bytes:
    """Return a fresh random 16-byte id (for messages and boot ids)."""
    return os.urandom(ID_BYTES)


@dataclass(frozen=True, slots=True)
class Echo:
    """The last message the sender received from the destination, echoed back.

    Attributes:
        seq: that message's sequence number.
        sent_ns: that message's ``sent_ns``, in the destination's own wall clock.
        held_ns: how long the sender held it before sending this reply, in its own clock.
    """

    seq: int
    sent_ns: int
    held_ns: int


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message with everything a receiver needs to time it.

    Attributes:
        msg_id: 16 random bytes naming this message.
        kind: what the message is (``"heartbeat"``, ``"task"``...), at most 255 UTF-8 bytes.
        sender: the sender's peer id, at most 255 UTF-8 bytes.
        seq: the sender's sequence number, counting up per sender.
        sent_ns: the sender's wall clock (``time.time_ns()``) when it sent the message.
        mono_ns: the sender's monotonic clock (``time.monotonic_ns()``) at the same moment.
        boot_id: 16 bytes naming the sender's host boot; equal boot ids mean the two
            monotonic clocks are the same clock.
        deadline_ns: when the work must be done, in the sender's wall clock, or None.
        echo: the last (seq, sent_ns) the sender received from the destination, or None.
        headers: free-form string headers.
        body: the payload, opaque to this layer.
    """

    kind: str
    sender: str
    seq: int
    sent_ns: int
    mono_ns: int
    boot_id: bytes
    msg_id: bytes = field(default_factory=new_id)
    deadline_ns: int | None = None
    echo: Echo | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
