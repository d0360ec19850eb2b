"""A worker node: consumes the job stream with a consumer group, runs jobs on a local engine.

Its parts share one Redis client, each a small class in a module of its own: the intake
(``XREADGROUP`` in batches as room allows, checks, dead letters, cancel notices), the
finisher (results stored and acked in one script call per batch, only while this node
still owns the entries) and the beater (heartbeats, lease renewal, judging peers and
claiming a dead peer's entries, orphan claims, trimming). This module wires them and runs
the node's life: first contact, serving, draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from redis.exceptions import ResponseError

import hybrid

from .beater import Beater
from .config import NodeConfig
from .conn import GROUP, REFUSED_ERRORS, TRANSIENT_ERRORS, Backoff, Keys, connect, redact, retrying
from .dispatch import Dispatcher, InFlight, build_registry
from .features import FeatureCache
from .finisher import Finisher
from .liveness import PeerTable, PeerView, group_detectors, negotiated_interval, peer_views
from .scripts import Scripts
from .state import log

__all__ = ["NodeConfig", "WorkerNode"]


class WorkerNode(Beater, Finisher):
    """One ``hybrid worker`` process: a consumer of the job stream with a local engine."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.keys = Keys(config.prefix, config.queue)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}".encode()
        self.registry = build_registry(config.modules)
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "received",
                "completed",
                "dead_lettered",
                "claimed",
                "lease_lost",
                "handed_back",
                "store_refused",
                "cancelled",
            ),
            0,
        )
        self._client = connect(config.url)
        self._scripts = Scripts(self._client)
        self.features = FeatureCache()
        self._engine = hybrid.Engine(
            workers=config.workers, monitor="auto" if config.follow_pressure else None
        )
        self._dispatcher = Dispatcher(
            self._engine, self.registry, self._job_done, config.wall_ns, self._client_offset_ns
        )
        poll_s, dead_after_s = config.beat_interval_s, config.dead_after_s
        custom = config.detector_factory
        self._peers = PeerTable(
            group_detectors(poll_s, dead_after_s)
            if custom is None
            else lambda role: custom(poll_s, dead_after_s)
        )
        self.beat_interval_s = negotiated_interval(config.beat_interval_s)  # as peers ask
        self._beaten_at = -math.inf
        self._inflight: dict[bytes, InFlight] = {}
        self._finished: list[InFlight] = []
        self._finished_event = asyncio.Event()
        self._room = asyncio.Event()
        self._stopping = False
        self._closed = False  # checked by the loops: redis-py may turn a cancel into an error
        self._loops: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._backoff = Backoff()
        self._said_waiting = False
        self._refused: BaseException | None = None  # credentials revoked while running
        self._refused_event = asyncio.Event()

    def peers(self) -> list[PeerView]:
        """Every peer this node judges: role, state, clock offset, last transit, the
        interval asked of it, and the interval it asks of this node."""
        return peer_views(self._peers, self.name, self.config.wall_ns() / 1e9)

    def clock_offset_s(self, peer: bytes) -> float | None:
        """How far this node's clock runs ahead of a peer's (``b"client:<id>"`` or a node's
        name), as the peer's beats show; None before its first beat was read."""
        return self._peers.offset_s(peer)

    # Life cycle

    async def serve(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Run until ``stop`` is set, then drain: finish or hand back every held entry.

        ``on_ready`` is called once the node consumes: its local workers are up and its
        group exists (not when Redis is still unreachable).

        Raises:
            redis.exceptions.AuthenticationError, NoPermissionError: Redis refused this
                node's credentials, at first contact or later (revoked while it ran). The
                node stops at once; its held entries go to other nodes when it is judged
                dead.
        """
        await self._engine.start()
        try:
            await retrying(self._first_contact, Backoff(), stop.is_set)
            if stop.is_set():
                return
            log.info("node %s consuming %s", self.name.decode(), self.keys.jobs.decode())
            self._reader = self._guarded(self._read_loop())
            self._loops = [
                self._guarded(self._finish_loop()),
                self._guarded(self._beat_loop()),
                self._guarded(self._cancel_loop()),
            ]
            if on_ready is not None:
                on_ready()
            await _first_of(stop, self._refused_event)
            if self._refused is not None:
                raise self._refused
            await self._drain()
        finally:
            self._closed = True
            for task in [*self._loops, *([self._reader] if self._reader else [])]:
                task.cancel()
            await asyncio.gather(*self._loops, return_exceptions=True)
            await self._engine.close(cancel=True)
            await self._client.aclose()

    def _guarded(self, loop: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a loop; credentials refused inside it stop the whole node."""

        async def run() -> None:
            try:
                await loop
            except REFUSED_ERRORS as exc:
                self._refused = self._refused or exc
                self._refused_event.set()

        return asyncio.create_task(run())

    async def _drain(self) -> None:
        self._stopping = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.drain_timeout_s):
                while self._inflight or self._finished:
                    self._room.clear()
                    await self._room.wait()
        with contextlib.suppress(*TRANSIENT_ERRORS, ResponseError):
            await self._hand_back_all()
            await self._client.hdel(self.keys.beats, self.name)
            if not await self._own_pending_ids():
                await self._client.xgroup_delconsumer(self.keys.jobs, GROUP, self.name)

    async def _hand_back_all(self) -> None:
        ids = await self._own_pending_ids()
        if ids:
            handed = await self._scripts.hand_back(
                keys=[self.keys.jobs], args=[GROUP, self.name, 0, self._ackdel(), *ids]
            )
            self.counters["handed_back"] += int(handed)
            log.info("handed back %d entries", handed)

    async def _own_pending_ids(self) -> list[bytes]:
        rows: Any = await self._client.xpending_range(
            self.keys.jobs, GROUP, min="-", max="+", count=100_000, consumername=self.name
        )
        return [bytes(row["message_id"]) for row in rows]

    async def _first_contact(self) -> None:
        """Create the group, saying once (not silently) that Redis is not there yet."""
        try:
            await self._ensure_group()
            await self._refresh_features()
        except REFUSED_ERRORS:
            raise  # wrong credentials: not a Redis that is not up yet
        except TRANSIENT_ERRORS as exc:
            if not self._said_waiting:
                self._said_waiting = True
                log.warning("waiting for Redis at %s: %s", redact(self.config.url), exc)
            raise


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
