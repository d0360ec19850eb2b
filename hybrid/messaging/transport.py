"""The transport seam, and the in-memory transport every process has without a server."""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from hybrid._errors import TransportClosed, UnknownPeer


@runtime_checkable
class Transport(Protocol):
    """Moves opaque datagrams between named peers. Delivery may be late, lost or reordered.

    Implementations: :class:`InMemoryTransport` (default), the fault-injecting
    :class:`~hybrid.messaging.faulty.FaultyTransport`, and adapters (Redis) elsewhere.
    """

    @property
    def address(self) -> str:
        """This endpoint's name, as peers address it."""
        ...

    async def send(self, destination: str, data: bytes) -> None:
        """Queue ``data`` for ``destination``; return once it is handed to the medium."""
        ...

    async def receive(self) -> tuple[str, bytes]:
        """Wait for the next datagram and return (source address, data)."""
        ...

    async def aclose(self) -> None:
        """Stop sending and receiving; a pending ``receive`` raises TransportClosed."""
        ...


class InMemoryNetwork:
    """A set of in-memory transports that can reach each other by address."""

    def __init__(self) -> None:
        self._inboxes: dict[str, asyncio.Queue[tuple[str, bytes] | None]] = {}

    def connect(self, address: str) -> InMemoryTransport:
        """Return a transport reachable at ``address``.

        Raises:
            ValueError: the address is taken.
        """
        if address in self._inboxes:
            raise ValueError(f"address {address!r} is already connected")
        inbox: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._inboxes[address] = inbox
        return InMemoryTransport(self, address, inbox)

    def deliver(self, source: str, destination: str, data: bytes) -> None:
        """Put ``data`` in the destination's inbox.

        Raises:
            UnknownPeer: nobody is connected at ``destination``.
        """
        inbox = self._inboxes.get(destination)
        if inbox is None:
            raise UnknownPeer(f"no peer at {destination!r}")
        inbox.put_nowait((source, data))

    def disconnect(self, address: str) -> None:
        """Remove ``address`` and wake its pending receiver."""
        inbox = self._inboxes.pop(address, None)
        if inbox is not None:
            inbox.put_nowait(None)


class InMemoryTransport:
    """One endpoint of an :class:`InMemoryNetwork`; datagrams are delivered at once, in order."""

    def __init__(
        self,
        network: InMemoryNetwork,
        address: str,
        inbox: asyncio.Queue[tuple[str, bytes] | None],
    ) -> None:
        self._network = network
        self._address = address
        self._inbox = inbox
        self._closed = False

    @property
    def address(self) -> str:
        """This endpoint's name."""
        return self._address

    async def send(self, destination: str, data: bytes) -> None:
        """Deliver ``data`` to ``destination``'s inbox (raises UnknownPeer if absent)."""
        if self._closed:
            raise TransportClosed(f"{self._address} is closed")
        self._network.deliver(self._address, destination, data)

    async def receive(self) -> tuple[str, bytes]:
        """Wait for the next datagram."""
        if self._closed:
            raise TransportClosed(f"{self._address} is closed")
        item = await self._inbox.get()
        if item is None:
            self._closed = True
            raise TransportClosed(f"{self._address} is closed")
        return item

    async def aclose(self) -> None:
        """Disconnect from the network."""
        if not self._closed:
            self._network.disconnect(self._address)
