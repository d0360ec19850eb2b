"""HTTP fetcher over one ``aiohttp.ClientSession`` (the crawler's ``Fetcher`` protocol).

What it does for each URL: per-host concurrency limits and pacing (a fixed delay such as
robots.txt's Crawl-delay, and an AutoThrottle-style delay that follows the host's
latency), connect/read/total timeouts, retries with exponential backoff and jitter for
transient failures (connection errors, timeouts, 429 and 5xx, honouring ``Retry-After``),
redirects followed by hand up to a limit with loop detection (each hop first offered to
the caller's ``check_hop``, so robots.txt can refuse it), a content-type filter applied
before the body is read, and a body size cap that cuts a huge or endless body
while streaming it (it is never buffered whole). Bodies are decompressed by aiohttp,
and the cap applies to the decompressed bytes.

The transit time it reports is measured on the event loop from sending the request to
the end of the body: the honest latency, not inflated by the caller's own processing,
and it is what drives the adaptive delay.
"""

from __future__ import annotations

from . import _identity  # noqa: F401  (first: one clear line if `adapters` is not ours)

# isort: split

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

try:
    import aiohttp
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("adapters.aiohttp needs aiohttp: pip install 'hybrid-engine[http]'") from exc


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
READ_CHUNK_BYTES = 64 * 1024
CONTENT_ENCODING = "Content-Encoding"
LATENCY_SMOOTHING = 0.3  # weight of the newest sample in the per-host latency average

HopCheck = Callable[[str], Awaitable[str | None]]


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
        filtered: the body was not read because its content type is not wanted, or a
            redirect hop was refused (a skip rather than a failure; ``error`` says why).
        charset: the ``charset`` parameter of the final ``Content-Type``, if any.
        chain: the URLs requested before ``final_url``, in order (``url`` first).
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
    charset: str | None = None
    chain: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class FetchOptions:
    """How the fetcher behaves; every duration in seconds, every size in bytes.

    Attributes:
        concurrency: requests in flight at once, all hosts together.
        per_host: requests in flight at once to one host.
        connect_timeout_s: time allowed to open a connection.
        read_timeout_s: time allowed between two reads of the response.
        total_timeout_s: time allowed for one request, body included.
        retries: extra attempts after a transient failure.
        backoff_base_s: first retry delay; doubled each time, with +-50 % jitter.
        backoff_max_s: cap on one retry delay.
        max_retry_after_s: a longer ``Retry-After`` gives up instead of waiting.
        max_redirects: redirects followed before giving up.
        max_body_bytes: bodies past this are cut and the fetch fails with ``too large``.
        content_types: media types whose body is read; empty reads every type.
        autothrottle: adapt each host's delay to its latency.
        target_concurrency: requests AutoThrottle aims to keep in flight per host
            (``None``: ``per_host``).
        min_delay_s: the smallest delay between two requests to a host.
        max_delay_s: the largest delay AutoThrottle sets.
        user_agent: the User-Agent header.
        headers: extra headers sent with every request.
        proxy: a proxy URL for every request.
    """

    concurrency: int = 64
    per_host: int = 8
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 20.0
    total_timeout_s: float = 30.0
    retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 10.0
    max_retry_after_s: float = 30.0
    max_redirects: int = 5
    max_body_bytes: int = 5 * 1024 * 1024
    content_types: frozenset[str] = frozenset({"text/html", "application/xhtml+xml"})
    autothrottle: bool = True
    target_concurrency: float | None = None
    min_delay_s: float = 0.0
    max_delay_s: float = 10.0
    user_agent: str = "hybrid-crawler/0.1"
    headers: Mapping[str, str] = field(default_factory=dict)
    proxy: str | None = None


@dataclass
class _Host:
    slots: asyncio.Semaphore
    next_start_at: float = 0.0
    fixed_delay_s: float = 0.0
    adaptive_delay_s: float = 0.0
    latency_s: float | None = None


@dataclass(frozen=True)
class _Reply:
    """One request's result; ``retry_after_s`` is set when it may be retried."""

    status: int = 0
    content_type: str = ""
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    location: str | None = None
    transit_s: float = 0.0
    error: str | None = None
    transient: bool = False
    retry_after_s: float | None = None
    filtered: bool = False
    charset: str | None = None


class AiohttpFetcher:
    """A polite HTTP fetcher; create it inside a running loop, close it with :meth:`close`."""

    def __init__(self, options: FetchOptions | None = None) -> None:
        self.options = options or FetchOptions()
        opts = self.options
        connector = aiohttp.TCPConnector(limit=opts.concurrency, limit_per_host=opts.per_host)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": opts.user_agent, **opts.headers},
            timeout=aiohttp.ClientTimeout(
                total=opts.total_timeout_s,
                sock_connect=opts.connect_timeout_s,
                sock_read=opts.read_timeout_s,
            ),
        )
        self._hosts: dict[str, _Host] = {}
        self._host_of_origin: dict[str, _Host] = {}  # "scheme://netloc" -> its host
        self._target = opts.target_concurrency or float(opts.per_host)

    async def __aenter__(self) -> AiohttpFetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session and its connections."""
        await self._session.close()

    def set_host_delay(self, host: str, delay_s: float) -> None:
        """Keep at least ``delay_s`` between two requests to ``host`` (``"name:port"``)."""
        self._host(host).fixed_delay_s = max(0.0, delay_s)

    def host_latency_s(self) -> dict[str, float]:
        """The smoothed transit time per host (``"name:port"``), in seconds."""
        return {
            name: host.latency_s for name, host in self._hosts.items() if host.latency_s is not None
        }

    async def fetch(self, url: str, *, check_hop: HopCheck | None = None) -> FetchResult:
        """Fetch ``url``, following redirects and retrying transient failures.

        Args:
            url: the URL to fetch (the caller has checked it may).
            check_hop: called with each redirect target before it is requested; a
                reason returned ends the fetch there, as ``filtered`` with that reason.

        Never raises for a per-URL problem: the result's ``error`` says what went wrong.
        """
        current, chain, attempts, transit_s = url, [url], 0, 0.0
        while True:
            reply, tries = await self._fetch_with_retries(current)
            attempts += tries
            transit_s += reply.transit_s
            if reply.location is None:
                return _result(url, chain, reply, attempts, transit_s)
            try:
                target = urljoin(current, reply.location)
            except ValueError:  # e.g. a broken IPv6 literal: reported as unsupported
                target = reply.location
            limit = self.options.max_redirects
            problem = _redirect_problem(target, chain, len(chain) - 1, limit)
            refusal = None if problem or check_hop is None else await check_hop(target)
            if problem or refusal:
                stopped = _Reply(
                    status=reply.status,
                    error=problem or refusal,
                    headers=reply.headers,
                    filtered=refusal is not None,
                )
                return _result(
                    url, chain if problem else [*chain, target], stopped, attempts, transit_s
                )
            chain.append(target)
            current = target

    async def _fetch_with_retries(self, url: str) -> tuple[_Reply, int]:
        attempt = 0
        while True:
            attempt += 1
            reply = await self._request_paced(url)
            if not reply.transient or attempt > self.options.retries:
                return reply, attempt
            wait_s = self._retry_wait_s(reply, attempt)
            if wait_s is None:
                return _Reply(
                    status=reply.status,
                    error=f"{reply.error} (Retry-After {reply.retry_after_s:.0f} s too long)",
                ), attempt
            await asyncio.sleep(wait_s)

    def _retry_wait_s(self, reply: _Reply, attempt: int) -> float | None:
        opts = self.options
        if reply.retry_after_s is not None:
            if reply.retry_after_s > opts.max_retry_after_s:
                return None
            return reply.retry_after_s
        backoff_s: float = min(opts.backoff_max_s, opts.backoff_base_s * 2.0 ** (attempt - 1))
        return backoff_s * random.uniform(0.5, 1.5)

    async def _request_paced(self, url: str) -> _Reply:
        origin = _origin(url)
        host = self._host_of_origin.get(origin)
        if host is None:
            try:
                parts = urlsplit(origin)
                host = self._host(f"{parts.hostname}:{parts.port or _default_port(parts.scheme)}")
            except ValueError as exc:
                return _Reply(error=f"invalid url: {exc}")
            self._host_of_origin[origin] = host
        async with host.slots:
            await self._wait_turn(host)
            reply = await self._request(url)
        self._learn(host, reply)
        return reply

    async def _wait_turn(self, host: _Host) -> None:
        now = asyncio.get_running_loop().time()
        delay_s = max(host.fixed_delay_s, host.adaptive_delay_s, self.options.min_delay_s)
        start_at = max(now, host.next_start_at)
        host.next_start_at = start_at + delay_s
        if start_at > now:
            await asyncio.sleep(start_at - now)

    def _learn(self, host: _Host, reply: _Reply) -> None:
        if reply.status == 429:
            host.adaptive_delay_s = min(
                self.options.max_delay_s, max(2 * host.adaptive_delay_s, 0.1)
            )
            return
        if reply.status == 0 or reply.transit_s <= 0:
            return
        sample_s = reply.transit_s
        if host.latency_s is None:
            host.latency_s = sample_s
        else:
            host.latency_s += LATENCY_SMOOTHING * (sample_s - host.latency_s)
        if not self.options.autothrottle:
            return
        target_s = host.latency_s / self._target
        if reply.status >= 400 and target_s < host.adaptive_delay_s:
            return  # like Scrapy: an error answer never speeds a host up
        host.adaptive_delay_s = min(
            self.options.max_delay_s, (host.adaptive_delay_s + target_s) / 2
        )

    async def _request(self, url: str) -> _Reply:
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        try:
            async with self._session.get(
                url, allow_redirects=False, proxy=self.options.proxy
            ) as response:
                return await self._read(response, started_at)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return _Reply(error="timeout", transient=True, transit_s=loop.time() - started_at)
        except aiohttp.ClientConnectorDNSError as exc:
            return _Reply(error=f"dns: {_first_line(exc)}")
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            return _Reply(error=f"tls: {_first_line(exc)}")
        except aiohttp.InvalidURL as exc:
            return _Reply(error=f"invalid url: {exc}")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            return _Reply(error=f"connection: {_first_line(exc)}", transient=True)
        except (aiohttp.ClientError, ValueError, UnicodeError) as exc:
            return _Reply(error=f"http: {_first_line(exc)}")

    async def _read(self, response: aiohttp.ClientResponse, started_at: float) -> _Reply:
        loop = asyncio.get_running_loop()
        status = response.status
        headers = response.headers
        if status in REDIRECT_STATUSES and "Location" in headers:
            return _Reply(status=status, headers=headers, location=headers["Location"])
        if status in TRANSIENT_STATUSES:
            return _Reply(
                status=status,
                headers=headers,
                error=f"http {status}",
                transient=True,
                retry_after_s=_retry_after_s(headers.get("Retry-After")),
                transit_s=loop.time() - started_at,
            )
        media_type = response.content_type.lower()
        wanted = self.options.content_types
        if wanted and status < 400 and media_type not in wanted:
            return _Reply(
                status=status,
                headers=headers,
                content_type=media_type,
                error=f"content-type {media_type or 'missing'} not wanted",
                filtered=True,
            )
        too_large = _declared_too_large(response, self.options.max_body_bytes)
        body = b"" if too_large else await _read_capped(response, self.options.max_body_bytes)
        if too_large or body is None:
            return _Reply(
                status=status,
                headers=headers,
                content_type=media_type,
                error=f"too large: body over {self.options.max_body_bytes} bytes, cut",
            )
        return _Reply(
            status=status,
            headers=headers,
            content_type=media_type,
            body=body,
            error=f"http {status}" if status >= 400 else None,
            transit_s=loop.time() - started_at,
            charset=_charset(response),
        )

    def _host(self, name: str) -> _Host:
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = _Host(asyncio.Semaphore(self.options.per_host))
        return host


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it passes ``max_bytes`` (the rest is dropped)."""
    length = response.content_length
    if length is not None and length <= max_bytes and not response.headers.get(CONTENT_ENCODING):
        return await response.read()  # at most ``length`` bytes: the parser stops there
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            response.close()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _declared_too_large(response: aiohttp.ClientResponse, max_bytes: int) -> bool:
    length = response.content_length
    if length is not None and length > max_bytes:
        response.close()
        return True
    return False


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _charset(response: aiohttp.ClientResponse) -> str | None:
    try:
        return response.charset
    except (ValueError, UnicodeError):  # a hostile Content-Type header
        return None


def _redirect_problem(target: str, visited: list[str], redirects: int, limit: int) -> str | None:
    try:
        scheme = urlsplit(target).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        # The header's bytes are the server's: a lone surrogate must not reach a store.
        shown = target[:100].encode("utf-8", "backslashreplace").decode("utf-8")
        return f"redirect to unsupported url {shown}"
    if target in visited:
        return "redirect loop"
    if redirects >= limit:
        return f"too many redirects (over {limit})"
    return None


def _result(
    url: str, chain: list[str], reply: _Reply, attempts: int, transit_s: float
) -> FetchResult:
    return FetchResult(
        url=url,
        final_url=chain[-1],
        status=reply.status,
        content_type=reply.content_type,
        body=reply.body,
        headers=reply.headers,
        transit_s=transit_s,
        attempts=attempts,
        redirects=len(chain) - 1,
        error=reply.error,
        filtered=reply.filtered,
        charset=reply.charset,
        chain=tuple(chain[:-1]),
    )


def _origin(url: str) -> str:
    """``"scheme://netloc"`` of ``url`` (the whole of it when it has no path)."""
    end = url.find("/", url.find("//") + 2)
    return url if end < 0 else url[:end]


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
