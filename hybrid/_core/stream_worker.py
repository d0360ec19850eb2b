"""The worker's side of ``engine.stream``: run a generator, send its items as they come.

The worker connects to a Unix socket the parent listens on, and sends each item as a
length-prefixed pickle. The parent grants credit, one byte per item its consumer took;
with ``window`` items unacknowledged the worker waits for credit before it asks the
generator for more (backpressure: the generator is not run ahead of its consumer).
When the parent closes the socket (its consumer stopped), the next send or wait for
credit sees it, the generator is closed (its ``finally`` blocks run) and the call
returns: the worker is free for the next task. The generator's own exception is the
call's exception, raised by the parent after the items sent before it.
"""

from __future__ import annotations

import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

from . import worker_loop

FRAME = struct.Struct("<I")  # an item's pickled length
END = 0xFFFFFFFF  # in place of a length: the generator is done (returned or raised)


class _ConsumerGone(Exception):
    """The parent closed the stream: its consumer stopped."""


class _Sender:
    def __init__(self, path: str, window: int) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._window = window
        self._unacknowledged = 0

    def send(self, item: Any) -> None:
        while self._unacknowledged >= self._window:
            self._take_credit()
        data = pickle.dumps(item, pickle.HIGHEST_PROTOCOL)
        try:
            self._sock.sendall(FRAME.pack(len(data)) + data)
        except OSError as exc:  # EPIPE/ECONNRESET: the parent closed its end
            raise _ConsumerGone from exc
        self._unacknowledged += 1

    def _take_credit(self) -> None:
        try:
            credit = self._sock.recv(4096)
        except OSError as exc:
            raise _ConsumerGone from exc
        if not credit:
            raise _ConsumerGone
        self._unacknowledged -= len(credit)

    def finish(self) -> None:
        """Say the stream is done, and close once the parent has closed its end.

        Closing first, with credit unread, would reset the connection, and the parent
        could lose the last items it has not read yet.
        """
        try:
            self._sock.sendall(FRAME.pack(END))
            while True:
                self._take_credit()
        except (_ConsumerGone, OSError):
            pass
        finally:
            self._sock.close()


def run_stream(path: str, window: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Send the items of ``fn(*args)``, a sync or async generator, to the parent at ``path``."""
    sender = _Sender(path, window)
    try:
        produced = fn(*args)
        if hasattr(produced, "__anext__"):
            _drain_async(produced, sender)
        else:
            _drain(produced, sender)
    finally:
        sender.finish()


def _drain(generator: Any, sender: _Sender) -> None:
    try:
        for item in generator:
            sender.send(item)
    except _ConsumerGone:
        pass
    finally:
        close = getattr(generator, "close", None)
        if close is not None:
            close()


def _drain_async(generator: Any, sender: _Sender) -> None:
    try:
        while True:
            try:
                item = worker_loop.run(generator.__anext__())
            except StopAsyncIteration:
                return
            sender.send(item)
    except _ConsumerGone:
        pass
    finally:
        worker_loop.run(generator.aclose())
