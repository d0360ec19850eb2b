"""The fetcher seam: what the core expects from something that fetches URLs.

An adapter (``adapters.aiohttp``) implements :class:`Fetcher`; applications such as the
example crawler depend only on this module, so the HTTP library can be swapped.
A fetch never raises for a per-URL problem (DNS failure, timeout, 404, a body that is
too large): the problem is described by the :class:`FetchResult`'s ``error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class FetchResult:
    """The outcome of fetching one URL.

    Attributes:
        url: the URL asked for.
        final_url: the URL that answered, after redirects.
        status: the final HTTP status, or 0 when no response came.
        content_type: the media type without parameters (``"text/html"``), lower case.
        body: the response body; empty when it was not read (error, filtered type).
        headers: the final response's headers.
        transit_s: seconds from sending the request to the end of the body, measured on
            the event loop (retries and waits for politeness excluded).
        attempts: requests made, retries included.
        redirects: redirects followed.
        error: ``None`` on success, else a short reason such as ``"timeout"``,
            ``"dns: ..."``, ``"http 404"``, ``"redirect loop"`` or ``"too large"``.
        filtered: the body was not read because its content type is not wanted (a skip
            rather than a failure; ``error`` names the type).
    """

    url: str
    final_url: str
    status: int
    content_type: str = ""
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    transit_s: float = 0.0
    attempts: int = 1
    redirects: int = 0
    error: str | None = None
    filtered: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class Fetcher(Protocol):
    """Fetches URLs politely; one instance is shared by every task of a crawl."""

    async def fetch(self, url: str) -> FetchResult:
        """Fetch ``url``, following redirects, and describe what happened.

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
