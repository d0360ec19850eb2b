"""The crawler's fetcher seam: what it expects from something that fetches URLs.

``adapters.aiohttp.Fetcher`` implements :class:`Fetcher` (and defines the
:class:`~adapters.aiohttp.FetchResult` it returns); the crawler depends only on this
protocol, so the HTTP library can be swapped. A fetch never raises for a per-URL problem
(DNS failure, timeout, 404, a body that is too large): the result's ``error`` says it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from adapters.aiohttp import FetchResult


@runtime_checkable
class Fetcher(Protocol):
    """Fetches URLs politely; one instance is shared by every task of a crawl."""

    async def fetch(
        self, url: str, *, check_hop: Callable[[str], Awaitable[str | None]] | None = None
    ) -> FetchResult:
        """Fetch ``url``, following redirects, and describe what happened.

        ``check_hop`` is awaited with each redirect target before it is requested; when it
        returns a reason, the fetch stops there and the result is ``filtered`` with it.

        Cancellation: the request in flight is abandoned and its connection closed.
        """
        ...

    def set_host_delay(self, host: str, delay_s: float) -> None:
        """Keep at least ``delay_s`` between two requests to ``host`` (e.g. Crawl-delay)."""
        ...

    def host_latency_s(self) -> Mapping[str, float]:
        """The smoothed transit time per host, in seconds."""
        ...

    async def close(self) -> None:
        """Close connections; further fetches are an error."""
        ...
