"""A node's beater: heartbeats at the interval peers ask, lease renewal, judging peers and
taking a dead one's entries, orphan claims, clean-up of gone clients, stream trimming."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgpack  # type: ignore[import-untyped]
from redis.exceptions import ResponseError

from .conn import GROUP, REFUSED_ERRORS, TRANSIENT_ERRORS
from .intake import Intake
from .liveness import beat_value
from .scripts import taken_entries
from .state import READ_BATCH, log
from .trim import trim_acknowledged

ORPHAN_CHECK_S = 1.0  # how often to claim entries idle past the lease
STALL_BEATS = 3.0  # a beat this many intervals late means the node itself was stopped
CLIENT_GONE_S = 60.0  # a client silent this long is gone: its beat and reply stream removed


class Beater(Intake):
    """The node's periodic work; claimed entries go through the intake's checks."""

    async def _beat_loop(self) -> None:
        interval_s = self.config.beat_interval_s
        next_orphan_check = next_trim = last_started = time.monotonic()
        recheck = False
        while not self._closed:
            started = time.monotonic()
            # A long gap means this node was stopped (SIGSTOP, a VM pause): peers may have
            # taken its entries, so check every lease at once and drop the work it lost.
            # After an outage too: a restarted Redis may have lost every entry held here.
            stalled = recheck or started - last_started > STALL_BEATS * interval_s
            last_started, recheck = started, False
            try:
                if started - self._beaten_at >= self.beat_interval_s:
                    self._beaten_at = started
                    await self._beat()
                await self._refresh_features()
                await self._renew_leases(everything=stalled)
                await self._judge_peers()
                if started >= next_orphan_check:
                    next_orphan_check = started + ORPHAN_CHECK_S
                    await self._claim_orphans()
                if started >= next_trim:
                    next_trim = started + self.config.trim_interval_s
                    await trim_acknowledged(
                        self._client, self._scripts, self.keys.jobs, self.features
                    )
            except REFUSED_ERRORS:
                raise
            except TRANSIENT_ERRORS:
                log.debug("Redis unreachable; the node keeps trying")
                recheck = True
                self.features.invalidate()
            except ResponseError as exc:
                log.debug("beat step failed: %s", exc)
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))

    async def _beat(self) -> None:
        self.beat_interval_s = self._peers.asked_of(self.name, self.config.beat_interval_s)
        value = beat_value(
            self.config.wall_ns(), self.beat_interval_s, "node", self.config.secret,
            self.name, self._peers.asks(),
        )  # fmt: skip
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.beats, self.name, msgpack.packb(value))
            pipe.info("server")
            _, info = await pipe.execute()
        self.features.saw_run_id(str(info.get("run_id", "")))

    async def _renew_leases(self, everything: bool = False) -> None:
        now_s = time.monotonic()
        due = [
            item
            for item in self._inflight.values()
            if not item.lease_lost
            and (everything or now_s - item.renewed_at_s > self.config.lease_s / 4)
        ]
        if not due:
            return
        lost = await self._scripts.renew(
            keys=[self.keys.jobs], args=[GROUP, self.name, *(item.entry_id for item in due)]
        )
        lost_ids = set(lost)
        for item in due:
            item.renewed_at_s = now_s
            item.lease_lost = item.entry_id in lost_ids
        if lost_ids:
            for job_id, running in self._dispatcher.abandon(lost_ids):
                log.warning(
                    "job %s: lease lost to another node; stopped %d of its calls here",
                    job_id.decode(errors="replace"),
                    running,
                )

    async def _judge_peers(self) -> None:
        raw: Any = await self._client.hgetall(self.keys.beats)
        beats: dict[bytes, Any] = {}
        for name, value in raw.items():
            with contextlib.suppress(Exception):
                beats[name] = msgpack.unpackb(value)
        beats.pop(self.name, None)
        now_s = self.config.wall_ns() / 1e9
        self._peers.update(beats, now_s, self.config.secret)
        for name in list(self._peers.peers):
            if name not in beats:
                self._peers.forget(name)
        for dead in self._peers.dead(now_s):
            await self._take_over(dead)
        for gone in self._peers.silent(now_s, CLIENT_GONE_S, role="client"):
            await self._clean_up_client(gone)

    async def _clean_up_client(self, name: bytes) -> None:
        """A client silent this long is gone: its beat and reply stream go too. (One that
        comes back finds its beat missing and sends again what it lost.)"""
        client_id = name.removeprefix(b"client:").decode(errors="replace")
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hdel(self.keys.beats, name)
            pipe.delete(self.keys.reply(client_id))
            await pipe.execute()
        self._peers.forget(name)
        log.info("client %s is gone: removed its beat and reply stream", client_id)

    async def _take_over(self, dead: bytes) -> None:
        rows = await self._client.xpending_range(
            self.keys.jobs, GROUP, min="-", max="+", count=10_000, consumername=dead
        )
        ids = [row["message_id"] for row in rows]
        if ids:
            reply = await self._scripts.claim_from(
                keys=[self.keys.jobs], args=[GROUP, dead, self.name, *ids]
            )
            taken = taken_entries(reply)
            self.counters["claimed"] += len(taken)
            log.warning("peer %s is dead: took %d entries", dead.decode(), len(taken))
            await self._accept(taken)
        if len(ids) < 10_000:
            await self._client.hdel(self.keys.beats, dead)
            self._peers.forget(dead)
            with contextlib.suppress(ResponseError):
                await self._client.xgroup_delconsumer(self.keys.jobs, GROUP, dead)

    async def _claim_orphans(self) -> None:
        """Entries idle past the lease: held by a node that never beat here (or lost its beat)."""
        if self._stopping:
            return
        reply = await self._scripts.autoclaim(
            keys=[self.keys.jobs],
            args=[GROUP, self.name, int(self.config.lease_s * 1000), READ_BATCH],
        )
        taken = taken_entries(reply)
        if taken:
            self.counters["claimed"] += len(taken)
            log.warning("claimed %d entries idle past the lease", len(taken))
            await self._accept(taken)
