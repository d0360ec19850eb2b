"""The ceiling: batched XADD, XREADGROUP, XACK with redis-py and no framework at all.

Two consumer processes read jobs in batches, ack them and add a result per job in one
pipeline; the producer adds jobs in pipelined batches and reads the results back.
Usage: python raw_streams.py URL JOBS
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import time
import uuid

import redis.asyncio as aioredis

BATCH = 1000


async def consume(url: str, stream: str, results: str, name: str) -> None:
    client = aioredis.Redis.from_url(url)
    while True:
        reply = await client.xreadgroup("g", name, {stream: ">"}, count=BATCH, block=1000)
        if not reply:
            continue
        entries = reply[0][1]
        async with client.pipeline(transaction=False) as pipe:
            for _, fields in entries:
                pipe.xadd(results, {b"j": fields[b"j"], b"o": fields[b"a"]})
            pipe.xack(stream, "g", *(entry_id for entry_id, _ in entries))
            await pipe.execute()


def consumer_process(url: str, stream: str, results: str, name: str) -> None:
    asyncio.run(consume(url, stream, results, name))


async def produce(url: str, jobs: int, stream: str, results: str) -> float:
    client = aioredis.Redis.from_url(url)
    started = time.perf_counter()
    for start in range(0, jobs, BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(jobs, start + BATCH)):
                pipe.xadd(stream, {b"j": str(i).encode(), b"a": b"\x91\x01"})
            await pipe.execute()
    seen, last = 0, "0-0"
    while seen < jobs:
        reply = await client.xread({results: last}, count=10_000, block=1000)
        for _, entries in reply or []:
            seen += len(entries)
            last = entries[-1][0]
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


def main() -> None:
    url, jobs = sys.argv[1], int(sys.argv[2])
    tag = uuid.uuid4().hex[:8]
    stream, results = f"rawbench:{tag}:jobs", f"rawbench:{tag}:results"

    async def setup() -> None:
        client = aioredis.Redis.from_url(url)
        await client.xgroup_create(stream, "g", id="0", mkstream=True)
        await client.aclose()

    asyncio.run(setup())
    consumers = [
        multiprocessing.Process(target=consumer_process, args=(url, stream, results, f"c{k}"))
        for k in range(2)
    ]
    for process in consumers:
        process.start()
    elapsed = asyncio.run(produce(url, jobs, stream, results))
    for process in consumers:
        process.kill()
        process.join()

    async def cleanup() -> None:
        client = aioredis.Redis.from_url(url)
        await client.delete(stream, results)
        await client.aclose()

    asyncio.run(cleanup())
    print(json.dumps({"jobs": jobs, "seconds": elapsed}))


if __name__ == "__main__":
    main()
