"""arq: no-op jobs end to end, two worker processes (arq's worker is one process each).

Tuned past arq's defaults (poll_delay 0.5 s, max_jobs 10) to poll every 10 ms and hold
up to 1000 jobs, as a user chasing throughput would. Usage: python arq_noop.py URL JOBS
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import result_key_prefix

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_QUEUE", "arq-bench")


async def noop(ctx: dict[str, Any], x: int) -> int:
    return x


class WorkerSettings:
    functions = (noop,)
    redis_settings = RedisSettings.from_dsn(URL)
    queue_name = QUEUE
    poll_delay = 0.01
    max_jobs = 1000


async def submit(url: str, queue: str, jobs: int) -> float:
    from _driver import wait_for_keys

    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=queue)
    started = time.perf_counter()
    ids: list[str] = []
    for start in range(0, jobs, 500):
        sent = await asyncio.gather(
            *(pool.enqueue_job("noop", i) for i in range(start, min(jobs, start + 500)))
        )
        ids += [job.job_id for job in sent if job is not None]
    await wait_for_keys(url, [result_key_prefix + job_id for job_id in ids])
    elapsed = time.perf_counter() - started
    for start in range(0, len(ids), 10_000):
        await pool.delete(*(result_key_prefix + job_id for job_id in ids[start : start + 10_000]))
    await pool.aclose()
    return elapsed


def main() -> None:
    from _driver import delete_matching, python, start_workers, stop_workers

    url, jobs = sys.argv[1], int(sys.argv[2])
    queue = f"arq-bench-{uuid.uuid4().hex[:8]}"
    env = {"BENCH_REDIS_URL": url, "BENCH_QUEUE": queue}
    workers = start_workers([python, "-m", "arq", "arq_noop.WorkerSettings"], 2, env)
    try:
        time.sleep(2.0)
        elapsed = asyncio.run(submit(url, queue, jobs))
    finally:
        stop_workers(workers)
        asyncio.run(delete_matching(url, f"{queue}*"))
    print(json.dumps({"jobs": jobs, "seconds": elapsed}))


if __name__ == "__main__":
    main()
