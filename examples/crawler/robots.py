"""robots.txt (RFC 9309), fetched once per host and cached: rules and Crawl-delay.

The rules are read by Protego, Scrapy's parser: ``*`` and ``$`` wildcards, the longest
match wins, an ``Allow`` wins a tie, and a group is chosen by the agent's product token.
What the answer to ``/robots.txt`` means follows RFC 9309 section 2.3.1:

- 2xx: its rules (garbage lines are ignored);
- 4xx: no rules, everything is allowed;
- 5xx, a timeout or a broken connection: everything is disallowed, as the RFC asks of a
  server that cannot say (the request was already retried);
- no address for the host (DNS) or a failed TLS handshake: allowed, since no page of that
  host can be fetched either: each page's own fetch fails with the real reason, instead
  of every URL reading "robots.txt unavailable".

A Crawl-delay sets the fetcher's minimum delay between two requests to that host.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protego import Protego

from examples.crawler.fetching import Fetcher

from .urls import host_of

if TYPE_CHECKING:
    from adapters.aiohttp import FetchResult

MAX_ROBOTS_BYTES = 512 * 1024  # Google reads the first 500 KiB; RFC 9309 asks for 500 KiB
MAX_CRAWL_DELAY_S = 60.0  # a larger (or nan/inf) Crawl-delay is capped here
DISALLOWED = "robots.txt disallows"
HOST_UNREACHABLE = ("dns:", "tls:")  # fetch errors that every page of the host will get too


@dataclass(frozen=True)
class RobotsRules:
    """What one host's robots.txt says; ``refused`` set: every URL is refused with it."""

    parser: Protego | None = None
    refused: str | None = None

    def refusal(self, url: str, agent: str) -> str | None:
        """Why ``url`` may not be fetched by ``agent``, or ``None`` when it may."""
        if self.refused is not None:
            return self.refused
        if self.parser is not None and not self.parser.can_fetch(url, agent):
            return DISALLOWED
        return None

    def crawl_delay_s(self, agent: str) -> float | None:
        """The Crawl-delay of ``agent``'s group, capped; ``None`` when there is none."""
        if self.parser is None:
            return None
        delay_s = self.parser.crawl_delay(agent)
        if delay_s is None or math.isnan(delay_s):
            return None
        return min(MAX_CRAWL_DELAY_S, max(0.0, float(delay_s)))


def rules_from(result: FetchResult) -> RobotsRules:
    """The rules that the answer to a ``/robots.txt`` request stands for (RFC 9309)."""
    if result.status and 200 <= result.status < 300 and result.ok:
        text = result.body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
        return RobotsRules(parser=Protego.parse(text))
    if 400 <= result.status < 500:
        return RobotsRules()
    if result.status == 0 and (result.error or "").startswith(HOST_UNREACHABLE):
        return RobotsRules()
    why = result.error or f"http {result.status}"
    return RobotsRules(refused=f"robots.txt unavailable ({why}): all disallowed")


class RobotsCache:
    """Answers "may we fetch this URL?" per host, fetching each robots.txt once.

    Args:
        robots_fetcher: fetches robots.txt bodies (any content type).
        page_fetcher: receives each host's Crawl-delay.
        user_agent: the agent name matched against the rules.
        obey: when False every URL is allowed and nothing is fetched.
    """

    def __init__(
        self, robots_fetcher: Fetcher, page_fetcher: Fetcher, user_agent: str, *, obey: bool = True
    ) -> None:
        self._robots_fetcher = robots_fetcher
        self._page_fetcher = page_fetcher
        self._agent = user_agent
        self._obey = obey
        self._hosts: dict[str, asyncio.Future[RobotsRules]] = {}

    async def allowed(self, url: str) -> bool:
        return await self.refusal(url) is None

    async def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be fetched, or ``None`` when it may."""
        if not self._obey:
            return None
        return (await self._rules(url)).refusal(url, self._agent)

    async def _rules(self, url: str) -> RobotsRules:
        host = host_of(url)
        future = self._hosts.get(host)
        if future is None:
            future = self._hosts[host] = asyncio.get_running_loop().create_future()
            try:
                future.set_result(await self._load(url, host))
            except BaseException as exc:
                del self._hosts[host]
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters get it, nobody else must
                raise
        return await asyncio.shield(future)

    async def _load(self, url: str, host: str) -> RobotsRules:
        scheme = url.split(":", 1)[0]
        name = url.split("/", 3)[2]
        rules = rules_from(await self._robots_fetcher.fetch(f"{scheme}://{name}/robots.txt"))
        delay_s = rules.crawl_delay_s(self._agent)
        if delay_s:
            self._page_fetcher.set_host_delay(host, delay_s)
        return rules
