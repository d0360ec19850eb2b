"""robots.txt, fetched once per host and cached: Disallow rules and Crawl-delay.

A robots.txt that is missing (4xx), unreachable or garbage allows everything: garbage
lines are ignored by the parser, as in every major crawler. A Crawl-delay sets the
fetcher's minimum delay between two requests to that host.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.robotparser import RobotFileParser

from examples.crawler.fetching import Fetcher

from .urls import host_of

MAX_ROBOTS_BYTES = 512 * 1024  # Google reads the first 500 KiB
MAX_CRAWL_DELAY_S = 60.0  # a larger (or nan/inf) Crawl-delay is capped here


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
        lines: list[str] = []
        if result.ok and result.status == 200:
            text = result.body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
            lines = text.splitlines()
        parser.parse(lines)
        delay_s = crawl_delay_s(lines, self._agent)
        if delay_s:
            self._page_fetcher.set_host_delay(host, delay_s)
        return parser


def crawl_delay_s(lines: list[str], agent: str) -> float | None:
    """The Crawl-delay for ``agent``: its own group's, else the ``*`` group's.

    The standard library's parser only reads whole seconds; fractions are common.
    """
    token = agent.split("/")[0].lower()
    delays: dict[str, float] = {}
    group: list[str] = []
    in_rules = False
    for raw in lines:
        field, _, value = raw.split("#", 1)[0].partition(":")
        field, value = field.strip().lower(), value.strip()
        if field == "user-agent":
            if in_rules:
                group, in_rules = [], False
            group.append(value.lower())
        elif field:
            in_rules = True
            if field == "crawl-delay":
                with contextlib.suppress(ValueError):
                    for name in group:
                        delays.setdefault(name, min(MAX_CRAWL_DELAY_S, max(0.0, float(value))))
    for name, delay_s in delays.items():
        if name != "*" and name in token:
            return delay_s
    return delays.get("*")
