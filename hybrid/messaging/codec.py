"""A compact, versioned binary encoding for envelopes, with optional HMAC-SHA256 signing.

Layout of version 1 (big-endian)::

    "HY" version:u8 flags:u8 msg_id:16s seq:u64 sent_ns:i64 mono_ns:i64 boot_id:16s
    [deadline_ns:i64]                      if flags & HAS_DEADLINE
    [echo_seq:u64 echo_sent_ns:i64 held_ns:i64]  if flags & HAS_ECHO
    kind:(u8 len, utf-8) sender:(u8 len, utf-8)
    headers:(u16 count, then u8 key len, key, u16 value len, value)
    body:(u32 len, bytes)
    [hmac-sha256 over everything before:32s]   if flags & SIGNED

A message is rejected, with its reason counted, before any field is parsed when it is
oversized, truncated, of another magic or version, unsigned while a key is set, or its
signature does not match. Nothing here ever unpickles or evaluates received bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import Counter
from collections.abc import Mapping

from hybrid._errors import RejectedMessage
from hybrid.messaging.envelope import ID_BYTES, Echo, Envelope

MAGIC = b"HY"
VERSION = 1
SIGNED = 0x01
HAS_DEADLINE = 0x02
HAS_ECHO = 0x04
KNOWN_FLAGS = SIGNED | HAS_DEADLINE | HAS_ECHO
SIGNATURE_BYTES = 32  # HMAC-SHA256 digest size
DEFAULT_MAX_BYTES = 1 << 20  # 1 MiB: larger messages are rejected unread

_PREFIX = struct.Struct(">2sBB")
_FIXED = struct.Struct(f">{ID_BYTES}sQqq{ID_BYTES}s")
_DEADLINE = struct.Struct(">q")
_ECHO = struct.Struct(">Qqq")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Codec:
    """Encodes and decodes envelopes; counts every rejection by reason.

    Args:
        key: shared HMAC-SHA256 key. When set, every outgoing message is signed and every
            incoming one must carry a valid signature. When None, messages are not signed
            and signatures on incoming ones are stripped unchecked.
        max_bytes: the largest message accepted or produced.
    """

    def __init__(self, key: bytes | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._key = key
        self.max_bytes = max_bytes
        self.rejections: Counter[str] = Counter()

    def encode(self, envelope: Envelope) -> bytes:
        """Return the wire bytes of ``envelope``.

        Raises:
            ValueError: a field does not fit the format (too long, wrong id size) or the
                message exceeds ``max_bytes``.
        """
        if len(envelope.msg_id) != ID_BYTES or len(envelope.boot_id) != ID_BYTES:
            raise ValueError(f"msg_id and boot_id must be {ID_BYTES} bytes")
        try:
            data = self._pack(envelope)
        except struct.error as error:
            raise ValueError(f"envelope does not fit the wire format: {error}") from None
        if len(data) > self.max_bytes:
            raise ValueError(f"message of {len(data)} bytes exceeds max_bytes={self.max_bytes}")
        return data

    def _pack(self, envelope: Envelope) -> bytes:
        flags = (SIGNED if self._key is not None else 0) | _optional_flags(envelope)
        parts = [
            _PREFIX.pack(MAGIC, VERSION, flags),
            _FIXED.pack(
                envelope.msg_id, envelope.seq, envelope.sent_ns, envelope.mono_ns, envelope.boot_id
            ),
        ]
        if envelope.deadline_ns is not None:
            parts.append(_DEADLINE.pack(envelope.deadline_ns))
        if envelope.echo is not None:
            echo = envelope.echo
            parts.append(_ECHO.pack(echo.seq, echo.sent_ns, echo.held_ns))
        parts += [_short_text(envelope.kind), _short_text(envelope.sender)]
        parts += [_headers(envelope.headers), _U32.pack(len(envelope.body)), envelope.body]
        data = b"".join(parts)
        if self._key is not None:
            data += hmac.new(self._key, data, hashlib.sha256).digest()
        return data

    def decode(self, data: bytes) -> Envelope:
        """Return the envelope in ``data``.

        Raises:
            RejectedMessage: the message is refused; its reason is counted in ``rejections``.
        """
        try:
            payload, flags = self._check(data)
            return _parse(payload, flags)
        except RejectedMessage as rejected:
            self.rejections[rejected.reason] += 1
            raise

    def _check(self, data: bytes) -> tuple[memoryview, int]:
        if len(data) > self.max_bytes:
            raise RejectedMessage("oversized")
        if len(data) < _PREFIX.size:
            raise RejectedMessage("truncated")
        magic, version, flags = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise RejectedMessage("bad_magic")
        if version != VERSION or flags & ~KNOWN_FLAGS:
            raise RejectedMessage("unknown_version")
        if self._key is not None and not flags & SIGNED:
            raise RejectedMessage("unsigned")
        end = len(data) - SIGNATURE_BYTES if flags & SIGNED else len(data)
        if end < _PREFIX.size + _FIXED.size:
            raise RejectedMessage("truncated")
        view = memoryview(data)
        if self._key is not None:
            expected = hmac.new(self._key, view[:end], hashlib.sha256).digest()
            if not hmac.compare_digest(expected, view[end:]):
                raise RejectedMessage("bad_signature")
        return view[:end], flags


def _optional_flags(envelope: Envelope) -> int:
    deadline = HAS_DEADLINE if envelope.deadline_ns is not None else 0
    return deadline | (HAS_ECHO if envelope.echo is not None else 0)


def _short_text(text: str) -> bytes:
    raw = text.encode()
    return _U8.pack(len(raw)) + raw


def _headers(headers: Mapping[str, str]) -> bytes:
    parts = [_U16.pack(len(headers))]
    for name, value in headers.items():
        raw = value.encode()
        parts += [_short_text(name), _U16.pack(len(raw)), raw]
    return b"".join(parts)


class _Reader:
    """Reads fields off a buffer; any overrun is a truncated message."""

    def __init__(self, view: memoryview, offset: int) -> None:
        self.view = view
        self.offset = offset

    def take(self, unpacker: struct.Struct) -> tuple[int, ...]:
        if self.offset + unpacker.size > len(self.view):
            raise RejectedMessage("truncated")
        values = unpacker.unpack_from(self.view, self.offset)
        self.offset += unpacker.size
        return values

    def raw(self, size: int) -> bytes:
        if self.offset + size > len(self.view):
            raise RejectedMessage("truncated")
        chunk = bytes(self.view[self.offset : self.offset + size])
        self.offset += size
        return chunk

    def text(self, length: struct.Struct) -> str:
        try:
            return self.raw(self.take(length)[0]).decode()
        except UnicodeDecodeError:
            raise RejectedMessage("malformed") from None


def _parse(view: memoryview, flags: int) -> Envelope:
    msg_id, seq, sent_ns, mono_ns, boot_id = _FIXED.unpack_from(view, _PREFIX.size)
    reader = _Reader(view, _PREFIX.size + _FIXED.size)
    deadline_ns = reader.take(_DEADLINE)[0] if flags & HAS_DEADLINE else None
    echo = Echo(*reader.take(_ECHO)) if flags & HAS_ECHO else None
    kind, sender = reader.text(_U8), reader.text(_U8)
    headers = {reader.text(_U8): reader.text(_U16) for _ in range(reader.take(_U16)[0])}
    body = reader.raw(reader.take(_U32)[0])
    if reader.offset != len(view):
        raise RejectedMessage("malformed")
    return Envelope(
        kind=kind,
        sender=sender,
        seq=seq,
        sent_ns=sent_ns,
        mono_ns=mono_ns,
        boot_id=boot_id,
        msg_id=msg_id,
        deadline_ns=deadline_ns,
        echo=echo,
        headers=headers,
        body=body,
    )
