"""robots.txt, fetched once per host and cached: Disallow rules and Crawl-delay.

A robots.txt that is missing (4xx), unreachable or garbage allows everything: garbage
lines are ignored by the parser, as in every major crawler. A Crawl-delay sets the
fetcher's minimum delay between two requests to that host.
"""

from __future__ import annotations

import asyncio
from urllib.robotparser import RobotFileParser

from hybrid.fetching import Fetcher

from .urls import host_of

MAX_ROBOTS_BYTES = 512 * 1024  # Google reads the first 500 KiB


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
        self._hosts: dict[str, asyncio.Future[RobotFileParser]] = {}

    async def allowed(self, url: str) -> bool:
        if not self._obey:
            return True
        return (await self._rules(url)).can_fetch(self._agent, url)

    async def _rules(self, url: str) -> RobotFileParser:
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

    async def _load(self, url: str, host: str) -> RobotFileParser:
        scheme = url.split(":", 1)[0]
        name = url.split("/", 3)[2]
        result = await self._robots_fetcher.fetch(f"{scheme}://{name}/robots.txt")
        parser = RobotFileParser()
        if result.ok and result.status == 200:
            text = result.body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
            parser.parse(text.splitlines())
        else:
            parser.parse([])
        delay = parser.crawl_delay(self._agent)
        if delay:
            self._page_fetcher.set_host_delay(host, float(delay))
        return parser
