"""Baseline crawlers (Scrapy) and the shared heavy extraction step for bench_crawler."""
