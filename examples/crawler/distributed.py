"""A frontier shared by several crawler processes through a Redis stream.

Keys under ``--redis-prefix``: ``:stream`` (the queue, read through the consumer group
``crawlers``), ``:seen`` (a set: every URL ever queued), ``:results`` (a hash: URL ->
final state) and ``:handed-out`` (a counter for ``--max-pages``). The keys stay after the
crawl (running the command again resumes it); delete them to start afresh.

A URL is queued when it is first added to the seen set, in the same Lua script.
Finishing a URL takes two scripts around the local commit, each acting only while this
crawler owns the entry: the first claims the page's document (a page reached through an
alias, a redirect or a same-host ``rel=canonical``, belongs to the first entry that
reached it, recorded in ``:identities``; its aliases join the seen set so that no crawler
queues them again), then the page is committed to the local ``--db``, then the second
records the result, queues the new links and acknowledges the entry. So each URL gets one
result even when its entry was taken over, and a crash at any point loses no page.

Each crawler beats into ``:crawlers`` (its send time and the intervals it asks of others)
and judges the others with the failure detector the worker nodes use: the URLs of a
crawler judged dead are taken over at once (a killed crawler is noticed in about a
second), not after a fixed idle time. The entries it holds are renewed as a lease, so
entries of a consumer that never beat are taken once idle past :data:`ORPHAN_LEASE_S`.
The crawl is over when nothing is pending and nothing is unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgpack  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.redis import PeerTable, beat_value, group_detectors, redact
from adapters.sqlite import SqliteStore, Write

from .cli import Config
from .frontier import INSERT_OUTCOME, INSERT_PAGE, Job, Outcome
from .identity import identity_writes, safe_text
from .recent import RecentSet

GROUP = "crawlers"
ORPHAN_LEASE_S = 30.0  # an entry idle this long, held by a crawler that never beat, is taken
BEAT_INTERVAL_S = 1 / 3  # how often a crawler beats and judges the others, until asked
DEAD_AFTER_S = 0.8  # the least silence after which a crawler may be judged dead
SEEN_CACHE_URLS = 100_000  # recently queued URLs kept to skip a round trip for each
LEASE_RENEW_S = 1.0  # how often a crawler renews the entries it holds
READ_BLOCK_MS = 200
IDLE_CHECKS_TO_FINISH = 3  # consecutive empty checks before the crawl is declared over

# KEYS: stream, seen. ARGV: depth, url...
ADD_SCRIPT = """
local added = 0
for i = 2, #ARGV do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'url', ARGV[i], 'depth', ARGV[1])
    added = added + 1
  end
end
return added
"""
# KEYS: stream, seen, results.
# ARGV: group, consumer, id, url, state, depth, identity, alias count, alias..., link...
# Returns 0 (not the owner any more), 1 (recorded) or 2 (recorded, and the page is ours).
# Claim a page's document for the entry that fetched it, while this crawler owns the entry:
# a document first reached through an alias belongs to that entry (the claim survives a
# takeover of it); one whose own URL is known is stored by the entry of that URL.
# KEYS: stream, seen, identities. ARGV: group, consumer, id, url, identity, alias...
# Returns 0 (not the owner), 1 (owned; another entry stores the document) or 2 (store it).
CLAIM_SCRIPT = """
local owner = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #owner == 0 then return 0 end
for i = 6, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
if ARGV[5] == ARGV[4] then return 2 end
if redis.call('SADD', KEYS[2], ARGV[5]) == 1 then
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[3])
  return 2
end
if redis.call('HGET', KEYS[3], ARGV[5]) == ARGV[3] then return 2 end
return 1
"""
# Record the result, queue the new links and acknowledge the entry, if still its owner.
# KEYS: stream, seen, results. ARGV: group, consumer, id, url, state, depth, link...
COMPLETE_SCRIPT = """
local owner = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #owner == 0 then return 0 end
for i = 7, #ARGV do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'url', ARGV[i], 'depth', ARGV[6])
  end
end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


class RedisFrontier:
    """The crawl frontier in Redis; build it with :meth:`open`."""

    def __init__(self, client: aioredis.Redis, config: Config, store: SqliteStore) -> None:
        self.client = client
        self.store = store
        self.stopping = False
        self.stores_every_page = False  # another crawler may hold a page's identity
        prefix = config.redis_prefix
        self.keys = (f"{prefix}:stream", f"{prefix}:seen", f"{prefix}:results")
        self._beats_key = f"{prefix}:crawlers"
        self._peers = PeerTable(group_detectors(BEAT_INTERVAL_S, DEAD_AFTER_S))
        self._beat_every_s = BEAT_INTERVAL_S  # until the other crawlers ask for another
        self._handed_out_key = f"{prefix}:handed-out"
        self._identities_key = f"{prefix}:identities"  # document -> the entry that stored it
        self._max_pages = config.max_pages
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._window: deque[Job] = deque()
        self._window_size = max(1, min(config.window, config.concurrency * 2))
        self._held: set[str] = set()
        self._in_flight = 0
        self._idle_checks = 0
        self._progress = asyncio.Event()
        self._lock = asyncio.Lock()
        self._seen = RecentSet(SEEN_CACHE_URLS)  # Redis stays the authority
        self._add = client.register_script(ADD_SCRIPT)
        self._complete = client.register_script(COMPLETE_SCRIPT)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._keepalive: asyncio.Task[None] | None = None
        self._pending_writes: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, config: Config, store: SqliteStore) -> RedisFrontier:
        assert config.redis_url is not None
        client = aioredis.Redis.from_url(config.redis_url)
        frontier = cls(client, config, store)
        try:
            with contextlib.suppress(aioredis.ResponseError):  # BUSYGROUP: it exists
                await client.xgroup_create(frontier.keys[0], GROUP, id="0", mkstream=True)
        except RedisError as exc:
            await client.aclose()
            where = redact(config.redis_url)
            raise SystemExit(f"error: cannot use Redis at {where}: {exc}") from None
        await frontier._add(keys=frontier.keys[:2], args=[0, *config.seeds])
        frontier._keepalive = asyncio.create_task(frontier._keep_alive())
        return frontier

    async def next(self) -> Job | None:
        """The next URL this crawler should fetch, or ``None`` when the crawl is over."""
        while not self.stopping:
            if self._window:
                if self._max_pages is not None and await self._over_page_limit():
                    break
                self._in_flight += 1
                return self._window.popleft()
            async with self._lock:
                if self._window:
                    continue
                if await self._fill():
                    continue
                if self._in_flight == 0 and await self._looks_finished():
                    await self.close()
                    return None
            await asyncio.sleep(0.05)
        await self.close()
        return None

    def add_links(self, links: Iterable[str], depth: int) -> list[tuple[str, int]]:
        return [(url, depth) for url in links if self._seen.add_new(url)]

    def complete(self, job: Job, outcome: Outcome, links: list[tuple[str, int]]) -> None:
        task = asyncio.create_task(self._complete_one(job, outcome, links))
        self._pending_writes.add(task)
        task.add_done_callback(self._pending_writes.discard)

    def record_unqueued(self, url: str, depth: int, state: int, reason: str) -> None:
        row = (safe_text(url), depth, state, 0, safe_text(reason))
        self.store.submit([Write(INSERT_OUTCOME, [row])])

    def queued_in_memory(self) -> int:
        return len(self._window)

    def wake(self) -> None:
        self._progress.set()

    async def close(self) -> None:
        if self._pending_writes:
            await asyncio.gather(*self._pending_writes, return_exceptions=True)
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
            self._keepalive = None
            await self.client.aclose()

    async def _complete_one(self, job: Job, outcome: Outcome, links: list[tuple[str, int]]) -> None:
        depth = links[0][1] if links else job.depth + 1
        identity = outcome.identity or job.url
        aliases = [alias for alias in outcome.aliases if alias not in (job.url, identity)]
        try:
            # Claim the document, commit it locally, then tell Redis it is done: a crash
            # at any point loses nothing (the entry stays pending, and whoever takes it
            # over finds the claim bound to the entry, not to the crawler that died).
            owned = await self._claim(
                keys=[self.keys[0], self.keys[1], self._identities_key],
                args=[GROUP, self.consumer, job.key, job.url, identity, *aliases],
            )
            if not owned:
                return  # another crawler holds the entry now
            reason = safe_text(outcome.reason)
            row = (job.url, job.depth, outcome.state, outcome.status, reason)
            writes = [Write(INSERT_OUTCOME, [row])]
            writes += identity_writes(
                job.url, job.depth, outcome, INSERT_PAGE, store_page=owned == 2
            )
            await self.store.write(writes)
            await self._complete(
                keys=self.keys,
                args=[GROUP, self.consumer, job.key, job.url, outcome.state, depth]
                + [url for url, _ in links],
            )
        finally:
            self._held.discard(job.key)
            self._in_flight -= 1

    async def _over_page_limit(self) -> bool:
        """Count one more URL handed out by any crawler; True past ``--max-pages``."""
        handed_out = int(await self.client.incr(self._handed_out_key))
        return self._max_pages is not None and handed_out > self._max_pages

    async def _fill(self) -> bool:
        room = self._window_size
        stream = self.keys[0]
        _, claimed, *_ = await self.client.xautoclaim(
            stream, GROUP, self.consumer, int(ORPHAN_LEASE_S * 1000), "0-0", count=room
        )
        entries = list(claimed)
        if not entries:
            reply: Any = await self.client.xreadgroup(
                GROUP, self.consumer, {stream: ">"}, count=room, block=READ_BLOCK_MS
            )
            entries = [entry for _, stream_entries in reply for entry in stream_entries]
        for entry_id, fields in entries:
            if not fields:
                continue  # deleted entry
            key = entry_id.decode()
            self._held.add(key)
            self._window.append(Job(key, fields[b"url"].decode(), int(fields[b"depth"])))
        return bool(self._window)

    async def _looks_finished(self) -> bool:
        summary: Any = await self.client.xpending(self.keys[0], GROUP)
        groups: Any = await self.client.xinfo_groups(self.keys[0])
        lag = next((g.get("lag") for g in groups if g["name"] == GROUP.encode()), 0)
        if summary["pending"] == 0 and not lag:
            self._idle_checks += 1
        else:
            self._idle_checks = 0
        return self._idle_checks >= IDLE_CHECKS_TO_FINISH

    async def _keep_alive(self) -> None:
        """Beat, judge the other crawlers, take over the dead ones' URLs, renew leases."""
        renewed_at = time.monotonic()
        while True:
            await asyncio.sleep(self._beat_every_s)
            with contextlib.suppress(RedisError):
                await self._beat_and_judge()
                if time.monotonic() - renewed_at >= LEASE_RENEW_S:
                    renewed_at = time.monotonic()
                    held: list[Any] = list(self._held)
                    if held:
                        await self.client.xclaim(
                            self.keys[0], GROUP, self.consumer, 0, held, justid=True
                        )

    async def _beat_and_judge(self) -> None:
        me = self.consumer.encode()
        beat = beat_value(
            time.time_ns(), self._beat_every_s, "crawler", None, me, self._peers.asks()
        )
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self._beats_key, self.consumer, msgpack.packb(beat))
            pipe.hgetall(self._beats_key)
            _, raw = await pipe.execute()
        beats = {}
        for name, value in raw.items():
            with contextlib.suppress(Exception):
                beats[bytes(name)] = msgpack.unpackb(value)
        beats.pop(self.consumer.encode(), None)
        now_s = time.time()
        self._peers.update(beats, now_s)
        for dead in self._peers.dead(now_s, role="crawler"):
            await self._take_over(dead)
        self._beat_every_s = self._peers.asked_of(me, BEAT_INTERVAL_S)

    async def _take_over(self, dead: bytes) -> None:
        """Claim every URL a crawler judged dead still held, and forget it."""
        rows: Any = await self.client.xpending_range(
            self.keys[0], GROUP, min="-", max="+", count=10_000, consumername=dead
        )
        ids = [row["message_id"] for row in rows]
        if ids:
            await self.client.xclaim(self.keys[0], GROUP, self.consumer, 0, ids, justid=True)
            taken: Any = [await self.client.xrange(self.keys[0], i, i) for i in ids]
            for entries in taken:
                for entry_id, fields in entries:
                    key = entry_id.decode()
                    self._held.add(key)
                    self._window.append(Job(key, fields[b"url"].decode(), int(fields[b"depth"])))
        print(f"crawler {dead.decode()} is dead: took over {len(ids)} URLs", file=sys.stderr)
        await self.client.hdel(self._beats_key, dead)
        self._peers.forget(dead)
        with contextlib.suppress(RedisError):
            await self.client.xgroup_delconsumer(self.keys[0], GROUP, dead.decode())
