"""crawlee-python baseline: ``python crawlee_crawler.py START_URL HEAVY(0|1) MAX_PAGES``.

A ParselCrawler (lxml-based selectors) at 64 concurrent requests, following every link
on the same host, with crawlee's default storage.
"""

import asyncio
import sys
from datetime import timedelta

from crawlee import ConcurrencySettings
from crawlee.crawlers import ParselCrawler, ParselCrawlingContext
from heavy import burn


async def main(start: str, heavy: bool, max_pages: int) -> None:
    crawler = ParselCrawler(
        concurrency_settings=ConcurrencySettings(
            min_concurrency=64, desired_concurrency=64, max_concurrency=64
        ),
        max_requests_per_crawl=max_pages,
        request_handler_timeout=timedelta(seconds=60),
        configure_logging=False,
    )

    @crawler.router.default_handler
    async def handle(context: ParselCrawlingContext) -> None:
        if heavy:
            burn()
        context.selector.css("title::text").get()
        await context.enqueue_links(strategy="same-hostname")

    await crawler.run([start])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])))
