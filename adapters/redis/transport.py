"""A messaging :class:`~hybrid.messaging.transport.Transport` over Redis Streams.

Every address has one inbox stream, ``{prefix}:inbox:{address}``. Sending is one XADD
with an approximate MAXLEN bound (an inbox nobody reads never grows past it, and expires
after ``inbox_ttl_s`` without writes); receiving is XREAD BLOCK from the last id seen.
Delivery is at-most-once, like any datagram medium: what was trimmed, or lost in a Redis
restart, is gone, and the messaging layer above copes with it::

    transport = RedisStreamTransport("redis://127.0.0.1:6379/0", "node-a")
    async with Endpoint(transport, key=KEY) as endpoint:
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis

from hybrid import TransportClosed

from .conn import TRANSIENT_ERRORS, Backoff, connect, is_loading, server_run_id

DEFAULT_PREFIX = "hybrid-msg"
INBOX_MAXLEN = 10_000
INBOX_TTL_S = 3600
BLOCK_MS = 1000  # stays well under the connection's socket timeout
READ_COUNT = 256
SOURCE = b"src"
DATA = b"data"


class RedisStreamTransport:
    """One peer's inbox on Redis, and a way to append to every other peer's.

    Args:
        url: ``redis://`` or ``rediss://`` URL (credentials in it are used).
        address: this peer's name; its inbox is ``{prefix}:inbox:{address}``.
        prefix: key prefix shared by every peer that should reach each other.
        inbox_maxlen: approximate bound, in entries, on each inbox this transport sends to.
        inbox_ttl_s: an inbox expires this long after its last write.
        block_ms: how long one XREAD waits before it is reissued.
    """

    def __init__(
        self,
        url: str,
        address: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        inbox_maxlen: int = INBOX_MAXLEN,
        inbox_ttl_s: int = INBOX_TTL_S,
        block_ms: int = BLOCK_MS,
    ) -> None:
        self._client: aioredis.Redis = connect(url)
        self._address = address
        self._prefix = prefix
        self._inbox = self.inbox_key(address)
        self._inbox_maxlen = inbox_maxlen
        self._inbox_ttl_s = inbox_ttl_s
        self._block_ms = block_ms
        self._last_id: bytes | None = None  # None: not started, begin after what is there
        self._run_id: bytes | None = None
        self._received: list[tuple[str, bytes]] = []
        self._closed = asyncio.Event()
        self._backoff = Backoff()

    @property
    def address(self) -> str:
        """This peer's name."""
        return self._address

    def inbox_key(self, address: str) -> bytes:
        """The stream that holds ``address``'s incoming datagrams."""
        return f"{{{self._prefix}}}:inbox:{address}".encode()

    async def start(self) -> None:
        """Begin receiving after everything already in the inbox (an earlier life's mail).

        Called by the first :meth:`receive`; call it sooner so nothing sent in between is
        skipped.
        """
        if self._last_id is None:
            self._run_id = await server_run_id(self._client)
            newest: Any = await self._client.xrevrange(self._inbox, count=1)
            self._last_id = newest[0][0] if newest else b"0-0"

    async def send(self, destination: str, data: bytes) -> None:
        """Append ``data`` to ``destination``'s inbox.

        Redis cannot tell whether anyone reads an inbox, so an absent peer is not an error:
        its inbox is bounded and expires.

        Raises:
            TransportClosed: this transport was closed.
            ConnectionError: Redis is unreachable; the datagram is lost.
        """
        if self._closed.is_set():
            raise TransportClosed(f"{self._address} is closed")
        key = self.inbox_key(destination)
        pipeline = self._client.pipeline(transaction=False)
        pipeline.xadd(
            key,
            {SOURCE: self._address.encode(), DATA: data},
            maxlen=self._inbox_maxlen,
            approximate=True,
        )
        pipeline.expire(key, self._inbox_ttl_s)
        try:
            await pipeline.execute()
        except TRANSIENT_ERRORS as exc:
            raise ConnectionError(f"Redis unreachable, datagram to {destination} lost") from exc

    async def receive(self) -> tuple[str, bytes]:
        """Wait for the next datagram; Redis outages are waited out with backoff.

        Raises:
            TransportClosed: the transport is closed, or was closed while waiting.
        """
        while not self._received:
            if self._closed.is_set():
                raise TransportClosed(f"{self._address} is closed")
            read = asyncio.ensure_future(self._read())
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                await asyncio.wait({read, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                if not read.done():
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError, *TRANSIENT_ERRORS):
                        await read
            if read.done() and not read.cancelled():
                read.result()
        return self._received.pop(0)

    async def _read(self) -> None:
        try:
            await self.start()
            assert self._last_id is not None
            reply: Any = await self._client.xread(
                {self._inbox: self._last_id}, count=READ_COUNT, block=self._block_ms
            )
        except TRANSIENT_ERRORS:
            await self._recover()
            return
        except aioredis.ResponseError as exc:
            if not is_loading(exc):
                raise
            await self._recover()
            return
        self._backoff.reset()
        for _, entries in reply or ():
            for entry_id, fields in entries:
                self._last_id = entry_id
                source, data = fields.get(SOURCE), fields.get(DATA)
                if source is not None and data is not None:
                    self._received.append((source.decode(errors="replace"), data))

    async def _recover(self) -> None:
        """Wait, then start over from the new server's beginning if Redis restarted."""
        await self._backoff.wait()
        with contextlib.suppress(*TRANSIENT_ERRORS, aioredis.ResponseError):
            run_id = await server_run_id(self._client)
            if self._run_id is not None and run_id != self._run_id:
                self._last_id = b"0-0"  # the old ids mean nothing to a fresh server
            self._run_id = run_id

    async def aclose(self) -> None:
        """Stop; a pending :meth:`receive` raises TransportClosed. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        await asyncio.sleep(0)  # let a pending receive see it and drop its read
        await self._client.aclose()
