"""Scrapy baseline: ``scrapy runspider scrapy_spider.py -a start=URL -a heavy=0|1``."""

import scrapy

try:
    from heavy import burn
except ImportError:  # run from the repository root
    from benchmarks.crawler_baselines.heavy import burn


class SiteSpider(scrapy.Spider):
    name = "site"
    custom_settings = {  # noqa: RUF012 - Scrapy's documented form
        "CONCURRENT_REQUESTS": 64,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 64,
        "ROBOTSTXT_OBEY": False,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
    }

    def __init__(self, start, heavy="0", **kwargs):
        super().__init__(**kwargs)
        self.start_urls = [start]
        self.heavy = heavy == "1"

    def parse(self, response):
        if self.heavy:
            burn()
        yield {"url": response.url, "title": response.css("title::text").get()}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)
