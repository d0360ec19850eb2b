"""Baseline programs for bench_redis: arq, taskiq-redis and raw redis-py streams.

arq and taskiq run from their own venv (``benchmarks/.venv-redis-baselines``), never the
project's; each program prints one JSON line with its measured figures.
"""
