"""taskiq with taskiq-redis's stream broker: no-op jobs end to end, 2 worker processes.

Usage: python taskiq_noop.py URL JOBS  (prints one JSON line)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_QUEUE", "taskiq-bench")


def make_broker(url: str, queue: str) -> RedisStreamBroker:
    return RedisStreamBroker(url, queue_name=queue, consumer_group_name=queue).with_result_backend(
        RedisAsyncResultBackend(url, prefix_str=queue, result_ex_time=600)
    )


async def noop(x: int) -> int:
    return x


broker = make_broker(URL, QUEUE)
broker.register_task(noop, task_name="noop")


async def submit(url: str, queue: str, jobs: int) -> float:
    client = make_broker(url, queue)
    task = client.register_task(noop, task_name="noop")
    await client.startup()
    started = time.perf_counter()
    ids: list[str] = []
    for start in range(0, jobs, 500):
        sent = await asyncio.gather(*(task.kiq(i) for i in range(start, min(jobs, start + 500))))
        ids += [task.task_id for task in sent]
    from _driver import wait_for_keys

    await wait_for_keys(url, [f"{queue}:{task_id}" for task_id in ids])
    elapsed = time.perf_counter() - started
    await client.shutdown()
    return elapsed


def main() -> None:
    from _driver import delete_matching, python, start_workers, stop_workers

    url, jobs = sys.argv[1], int(sys.argv[2])
    queue = f"taskiq-bench-{uuid.uuid4().hex[:8]}"
    env = {"BENCH_REDIS_URL": url, "BENCH_QUEUE": queue}
    os.environ.update(env)
    workers = start_workers(
        [python, "-m", "taskiq", "worker", "taskiq_noop:broker", "--workers", "2"], 1, env
    )
    try:
        time.sleep(4.0)  # the stream group starts at "$": workers must be reading first
        elapsed = asyncio.run(submit(url, queue, jobs))
    finally:
        stop_workers(workers)
        asyncio.run(delete_matching(url, f"{queue}*"))
    print(json.dumps({"jobs": jobs, "seconds": elapsed}))


if __name__ == "__main__":
    main()
