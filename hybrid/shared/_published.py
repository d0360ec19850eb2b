"""Publish a large buffer once; every process maps it read-only instead of receiving a copy."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from . import _segment
from ._closing import ClosesOnExit

Buffer = bytes | bytearray | memoryview
COPIED_KINDS = frozenset({"bytes", "bytearray"})  # materialized as copies: never mapped


@dataclass(frozen=True)
class SharedBytes:
    """A small picklable handle to a buffer held in shared memory.

    Send it to workers in place of the data; each one maps the same memory.

    Attributes:
        name: the segment's file name in ``/dev/shm``.
        size_bytes: the buffer's length in bytes.
        kind: the type it stood for: ``"bytes"``, ``"bytearray"``, ``"memoryview"``
            or ``"ndarray"``.
        dtype: NumPy dtype string when ``kind == "ndarray"``.
        shape: NumPy shape when ``kind == "ndarray"``.
    """

    name: str
    size_bytes: int
    kind: str = "bytes"
    dtype: str = ""
    shape: tuple[int, ...] = ()

    def view(self) -> memoryview:
        """Map the buffer read-only, without copying; valid even after the owner releases it."""
        return _segment.map_readonly(self.name)[: self.size_bytes]

    def to_bytes(self) -> bytes:
        """Copy the buffer into a new ``bytes``."""
        return _segment.read_bytes(self.name, self.size_bytes)

    def materialize(self) -> Any:
        """The value in the type it was published as.

        ``bytes`` and ``bytearray`` are copied (they own their memory); a
        ``memoryview`` and a NumPy array map the segment read-only, without a copy.
        """
        if self.kind == "bytes":
            return self.to_bytes()
        if self.kind == "bytearray":
            return bytearray(self.to_bytes())
        if self.kind == "ndarray":
            numpy: Any = sys.modules.get("numpy") or __import__("numpy")
            return numpy.frombuffer(self.view(), dtype=self.dtype).reshape(self.shape)
        return self.view()


class Published(ClosesOnExit):
    """A buffer in shared memory, owned by the process that published it.

    Use as a context manager (or call :meth:`close`): closing unlinks the segment. Workers
    that mapped it keep their mapping; new attachments fail with ``FileNotFoundError``.
    """

    def __init__(self, handle: SharedBytes) -> None:
        self.handle = handle
        self.closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Published {self.handle.name} {self.handle.size_bytes} bytes {state}>"

    def close(self) -> None:
        """Unlink the segment; safe to call again."""
        if not self.closed:
            self.closed = True
            _segment.unlink(self.handle.name)


def publish(data: Any, *, name: str | None = None) -> Published:
    """Copy ``data`` into a new shared-memory segment owned by this process.

    Args:
        data: ``bytes``, ``bytearray``, ``memoryview`` or a C-contiguous NumPy array.
        name: segment name (from ``_segment.new_name``); a fresh one by default.

    Returns:
        The owner object; pass ``published.handle`` to workers.

    Raises:
        TypeError: ``data`` is not a buffer this module shares.
    """
    handle = handle_for(data, name or _segment.new_name())
    if handle is None:
        raise TypeError(f"cannot share {type(data).__qualname__}: pass bytes-like data")
    _segment.write_new(handle.name, memoryview(data))
    return Published(handle)


def handle_for(data: Any, name: str) -> SharedBytes | None:
    """The handle ``data`` would get, or None if it is not shareable."""
    if isinstance(data, bytes):
        return SharedBytes(name, len(data), "bytes")
    if isinstance(data, bytearray):
        return SharedBytes(name, len(data), "bytearray")
    if isinstance(data, memoryview):
        return SharedBytes(name, data.nbytes, "memoryview") if data.contiguous else None
    if is_plain_ndarray(data):
        return SharedBytes(name, int(data.nbytes), "ndarray", data.dtype.str, tuple(data.shape))
    return None


def size_of(data: Any) -> int:
    """Bytes a shareable buffer holds; -1 for anything else (a strided memoryview too)."""
    if isinstance(data, bytes | bytearray):
        return len(data)
    if isinstance(data, memoryview):
        return data.nbytes if data.contiguous else -1
    if is_plain_ndarray(data):
        return int(data.nbytes)
    return -1


def is_plain_ndarray(data: Any) -> bool:
    """A C-contiguous NumPy array of plain values (never imports NumPy)."""
    numpy = sys.modules.get("numpy")
    if numpy is None or type(data) is not numpy.ndarray:
        return False
    return bool(data.flags.c_contiguous) and not data.dtype.hasobject
