"""A worker node: consumes the job stream with a consumer group, runs jobs on a local engine.

Three loops share one Redis client: the reader (``XREADGROUP`` in batches, as room
allows), the finisher (results stored and acked in one script call per batch, only while
this node still owns the entries) and the beater (heartbeat, lease renewal of long jobs,
judging peers and claiming a dead peer's entries, orphan claims and stream trimming).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgpack  # type: ignore[import-untyped]
from redis.exceptions import ResponseError

import hybrid

from .codec import (
    DEFAULT_MAX_ENTRY_BYTES,
    Fields,
    Job,
    Rejected,
    decode_cancel,
    decode_job,
    describe_error,
    encode_result,
    secret_from,
)
from .conn import (
    GROUP,
    REFUSED_ERRORS,
    TRANSIENT_ERRORS,
    Backoff,
    Keys,
    connect,
    is_loading,
    redact,
    retrying,
)
from .dispatch import Dispatcher, InFlight, build_registry
from .errors import JobRejected
from .features import FeatureCache
from .liveness import (
    Detector,
    PeerTable,
    PeerView,
    beat_value,
    group_detectors,
    negotiated_interval,
    peer_views,
)
from .scripts import Scripts, taken_entries
from .trim import safe_trim_id

log = logging.getLogger("hybrid.redis")

READ_BLOCK_MS = 500  # how long one XREADGROUP waits for new entries
READ_BATCH = 512  # entries per XREADGROUP at most
FINISH_BATCH = 512  # results per FINISH script call at most
REPLY_TTL_MS = 600_000  # a reply stream nobody reads any more expires after this
DEAD_LETTER_MAX_LEN = 10_000  # approximate cap of the dead-letter stream
DEAD_LETTER_COPY_BYTES = 4096  # a letter keeps the entry's fields only up to this size,
# so the dead-letter stream holds at most about 10,000 x 4 KiB = 40 MiB whatever is sent
REPLAY_WINDOW_S = 60.0  # a signed job sent longer ago than this is refused as a replay
STORE_RETRY_S = 0.5  # pause before storing again results Redis refused to take
ORPHAN_CHECK_S = 1.0  # how often to claim entries idle past the lease
TRIM_INTERVAL_S = 2.0  # how often to trim acknowledged entries off the job stream
STALL_BEATS = 3.0  # a beat this many intervals late means the node itself was stopped
CLIENT_GONE_S = 60.0  # a client silent this long is gone: its beat and reply stream removed


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """How a worker node behaves (the ``hybrid worker`` options).

    Attributes:
        lease_s: an entry idle this long (no beat, no renewal from its holder) is claimed
            by any node; a live node renews its long jobs well before.
        beat_interval_s: how often the node reads its peers' beats, judges them and renews
            its leases. It beats at the interval its peers' detectors ask of it (the
            shortest asked, at most 3 beats a second), this one until they ask.
        dead_after_s: the least silence after which a peer may be judged dead.
        max_deliveries: an entry delivered more often than this is dead-lettered.
        drain_timeout_s: on SIGTERM, how long running jobs may take before the rest is
            handed back to the stream.
        trim_interval_s: how often acknowledged entries are trimmed off the job stream.
        secret: the shared HMAC key (``HYBRID_SECRET``); with one, every job, result and
            beat must verify, and a job seen before (a replay) or sent more than
            ``replay_window_s`` ago is refused.
        replay_window_s: see ``secret``.
        queue: the named queue this node serves (``RedisEngine.run(..., queue=NAME)``);
            "" is the default queue.
        wall_ns: this node's wall clock (injectable: tests shift it).
    """

    url: str = "redis://127.0.0.1:6379/0"
    modules: tuple[str, ...] = ()
    prefix: str = "hybrid"
    workers: int | None = None
    follow_pressure: bool = True  # the local engine follows CPU and memory pressure
    concurrency: int = 256
    lease_s: float = 30.0
    beat_interval_s: float = 0.2
    dead_after_s: float = 0.8
    max_deliveries: int = 5
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES
    drain_timeout_s: float = 30.0
    trim_interval_s: float = TRIM_INTERVAL_S
    secret: bytes | None = None
    detector_factory: Callable[[float, float], Detector] | None = None
    replay_window_s: float = REPLAY_WINDOW_S
    queue: str = ""
    wall_ns: Callable[[], int] = time.time_ns

    def __post_init__(self) -> None:
        secret_from(self.secret)  # an empty key is an error, not "no key"


class WorkerNode:
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

    async def _refresh_features(self) -> None:
        """Ask the server what it can do, first and after each reconnect (it may differ)."""
        if self.features.stale:
            log.info("%s", (await self.features.refresh(self._client)).describe())

    async def _ensure_group(self) -> None:
        try:
            await self._client.xgroup_create(self.keys.jobs, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # Reading

    async def _read_loop(self) -> None:
        streams: Any = {self.keys.jobs: b">"}
        while not self._stopping:
            room = self.config.concurrency - len(self._inflight)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                reply: Any = await self._client.xreadgroup(
                    GROUP,  # type: ignore[arg-type]  # redis-py's stubs want str; bytes work
                    self.name,  # type: ignore[arg-type]
                    streams,
                    count=min(room, READ_BATCH),
                    block=READ_BLOCK_MS,
                )
            except REFUSED_ERRORS:
                raise
            except TRANSIENT_ERRORS:
                self.features.invalidate()
                await self._backoff.wait()
                continue
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    await retrying(self._ensure_group, self._backoff, lambda: self._stopping)
                elif is_loading(exc):
                    await self._backoff.wait()
                else:
                    raise
                continue
            self._backoff.reset()
            for _stream, entries in reply or []:
                await self._accept([(entry_id, fields, 1) for entry_id, fields in entries])

    async def _accept(self, entries: Iterable[tuple[bytes, Fields | None, int]]) -> None:
        """Check new or claimed entries: run the good ones, dead-letter the rest."""
        accepted: list[InFlight] = []
        rejected: list[tuple[bytes, Fields | None, Rejected]] = []
        now_s = time.monotonic()
        for entry_id, fields, deliveries in entries:
            if entry_id in self._inflight:
                continue
            try:
                item = self._check(entry_id, fields, deliveries, now_s)
            except Rejected as exc:
                rejected.append((entry_id, fields, exc))
                continue
            accepted.append(item)
        if self.config.secret is not None and accepted:
            accepted = await self._drop_replays(accepted, rejected)
        for item in accepted:
            self._inflight[item.entry_id] = item
        self.counters["received"] += len(accepted)
        if rejected:
            await self._dead_letter(rejected)
        if accepted:
            await self._dispatcher.dispatch(accepted)

    async def _drop_replays(
        self, accepted: list[InFlight], rejected: list[tuple[bytes, Fields | None, Rejected]]
    ) -> list[InFlight]:
        """Signed jobs whose id came before in another entry are replays: refused unrun."""
        window_ms = int(self.config.replay_window_s * 1000)
        bucket = self.config.wall_ns() // (window_ms * 1_000_000)
        args: list[bytes | int] = [3 * window_ms]
        for item in accepted:
            args += [item.job.job_id, item.entry_id]
        keys = [self.keys.seen(bucket), self.keys.seen(bucket - 1)]
        replays = set(await self._scripts.seen(keys=keys, args=args))
        if not replays:
            return accepted
        for item in accepted:
            if item.job.job_id in replays:
                reason = "replay: this job id was already received in another entry"
                rejected.append((item.entry_id, item.job.fields, Rejected(reason, trusted=False)))
        return [item for item in accepted if item.job.job_id not in replays]

    def _check(
        self, entry_id: bytes, fields: Fields | None, deliveries: int, now_s: float
    ) -> InFlight:
        self._check_deliveries(deliveries)
        job = decode_job(
            fields,
            secret=self.config.secret,
            max_entry_bytes=self.config.max_entry_bytes,
            reply_prefix=self.keys.reply_prefix,
        )
        self._check_deliveries(deliveries + job.earlier_deliveries, job)
        if job.fn_name not in self.registry:
            raise Rejected(f"unknown task {job.fn_name!r} (not in the modules this node imported)")
        if self.config.secret is not None:
            self._check_fresh(job)
        return InFlight(entry_id, job, now_s)

    def _check_fresh(self, job: Job) -> None:
        """A signed job must say when it was sent, within the replay window (on the
        client's clock as this node estimates it)."""
        if job.sent_ns is None:
            raise Rejected("signed job without its send time", trusted=False)
        age_s = (self.config.wall_ns() - self._client_offset_ns(job) - job.sent_ns) / 1e9
        if age_s > self.config.replay_window_s:
            raise Rejected(
                f"stale: sent {age_s:.0f} s ago, past the replay window of "
                f"{self.config.replay_window_s:g} s (a replay, or a backlog longer than it)"
            )

    def _client_offset_ns(self, job: Job) -> int:
        """How far this node's clock runs ahead of the job's client's, as its beats say;
        0 before any beat of it was seen."""
        client = job.reply_key[len(self.keys.reply_prefix) :]
        offset_s = self._peers.offset_s(b"client:" + client)
        return 0 if offset_s is None else int(offset_s * 1e9)

    def _check_deliveries(self, deliveries: int, job: Job | None = None) -> None:
        limit = self.config.max_deliveries
        own = None if job is None else job.max_deliveries
        if own is not None and own < limit and deliveries > own:
            raise Rejected(
                f"delivered {deliveries} times (retries={own - 1}: the nodes running it died)"
            )
        if deliveries > limit:
            raise Rejected(f"delivered {deliveries} times (max_deliveries={limit})")

    def _ackdel(self) -> bytes:
        """The scripts' flag: acknowledge with XACKDEL ... ACKED (Redis 8.2+)."""
        return b"1" if self.features.current.ackdel else b""

    async def _dead_letter(self, rejected: list[tuple[bytes, Fields | None, Rejected]]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for entry_id, fields, refusal in rejected:
                log.warning("dead-lettered %s: %s", entry_id.decode(), refusal.reason)
                letter: dict[Any, Any] = {
                    b"dl:reason": refusal.reason.encode(),
                    b"dl:entry": entry_id,
                    b"dl:consumer": self.name,
                }
                copy = fields or {}
                size = sum(len(k) + len(v) for k, v in copy.items())
                if size <= DEAD_LETTER_COPY_BYTES:
                    letter.update(copy)
                else:
                    letter[b"dl:size"] = str(size).encode()
                    letter.update({k: v for k, v in copy.items() if k in (b"j", b"f", b"r")})
                pipe.xadd(self.keys.dead, letter, maxlen=DEAD_LETTER_MAX_LEN, approximate=True)
                if refusal.trusted:
                    self._tell_client(pipe, copy, refusal.reason)
            ids = [entry_id for entry_id, _, _ in rejected]
            args = [GROUP, b"", b"", self._ackdel(), *ids]
            await self._scripts.ack_all(keys=[self.keys.jobs], args=args, client=pipe)
            await pipe.execute()
        self.counters["dead_lettered"] += len(rejected)

    def _tell_client(self, pipe: Any, fields: Fields, reason: str) -> None:
        """Fail the caller's job at once instead of leaving it waiting, where it can be told.

        Only for entries that verified (or when the cluster has no key): an unverified
        entry's reply key and job id are whoever wrote it, and a rejection sent there could
        fail another client's genuine job.
        """
        reply_key, job_id = fields.get(b"r"), fields.get(b"j")
        if not reply_key or not job_id or not reply_key.startswith(self.keys.reply_prefix):
            return
        error = {**describe_error(JobRejected(reason)), "kind": "rejected"}
        pipe.xadd(reply_key, encode_result(job_id, [[0, error]], b"m", self.config.secret))

    # Cancelling

    async def _cancel_loop(self) -> None:
        """Stop the calls of jobs whose caller stopped waiting (``cancels`` stream)."""
        last_id = b"$"
        while not self._closed:
            try:
                reply: Any = await self._client.xread(
                    {self.keys.cancels: last_id}, count=READ_BATCH, block=READ_BLOCK_MS
                )
            except REFUSED_ERRORS:
                raise
            except TRANSIENT_ERRORS:
                await self._backoff.wait()
                continue
            except ResponseError:
                await self._backoff.wait()
                continue
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    try:
                        job_id = decode_cancel(fields, self.config.secret)
                    except Rejected as refusal:
                        log.warning("ignored a cancel notice: %s", refusal.reason)
                        continue
                    self._cancel_job(job_id)

    def _cancel_job(self, job_id: bytes) -> None:
        stopped = self._dispatcher.cancel_job(job_id)
        if stopped:
            self.counters["cancelled"] += 1
            log.warning(
                "job %s: its caller stopped waiting; stopped %d of its calls here",
                job_id.decode(errors="replace"),
                stopped,
            )

    # Finishing

    def _is_closed(self) -> bool:
        return self._closed

    def _job_done(self, item: InFlight) -> None:
        self._finished.append(item)
        self._finished_event.set()

    async def _finish_loop(self) -> None:
        while not self._closed:
            await self._finished_event.wait()
            self._finished_event.clear()
            refused: list[InFlight] = []
            while self._finished:
                batch = self._finished[:FINISH_BATCH]
                del self._finished[: len(batch)]
                try:
                    kept = await retrying(
                        partial(self._store, batch), self._backoff, self._is_closed
                    )
                except REFUSED_ERRORS:
                    raise
                except ResponseError as exc:
                    log.error("could not store %d results: %s", len(batch), exc)
                    kept = batch
                refused += kept or []
                for item in batch:
                    if item not in refused:
                        self._inflight.pop(item.entry_id, None)
                self._room.set()
            if refused:
                # Kept pending and leased (renewed with the rest): stored once Redis takes them.
                self._finished[:0] = refused
                await asyncio.sleep(STORE_RETRY_S)
                self._finished_event.set()

    async def _store(self, batch: list[InFlight]) -> list[InFlight]:
        """Store results and ack their jobs; returns the ones Redis refused to take."""
        args: list[bytes | str | int] = [GROUP, self.name, REPLY_TTL_MS, self._ackdel()]
        for item in batch:
            fields = encode_result(
                item.job.job_id, item.outcomes, item.job.codec, self.config.secret
            )
            args += [item.entry_id, item.job.reply_key, item.job.job_id, fields[b"c"]]
            args += [fields[b"o"], fields.get(b"s", b"")]
        lost, failed = await self._scripts.finish(keys=[self.keys.jobs], args=args)
        errors = {bytes(failed[k]): bytes(failed[k + 1]).decode() for k in range(0, len(failed), 2)}
        refused = [item for item in batch if item.entry_id in errors]
        for item in refused:
            if not item.store_refused:
                log.error(
                    "job %s: Redis refused its result (%s); kept unacknowledged, trying again",
                    item.job.job_id.decode(errors="replace"),
                    errors[item.entry_id],
                )
            item.store_refused = True
        self.counters["completed"] += len(batch) - int(lost) - len(refused)
        self.counters["lease_lost"] += int(lost)
        self.counters["store_refused"] += len(refused)
        return refused

    # Beating, leases and peers

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
                    await self._trim()
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

    async def _trim(self) -> None:
        """Drop entries every group has acknowledged; nothing unprocessed is ever dropped."""
        if self.features.current.ackdel:
            await self._scripts.trim_acked(keys=[self.keys.jobs])
            return
        min_id = await safe_trim_id(self._client, self.keys.jobs)
        if min_id is not None:
            await self._client.xtrim(self.keys.jobs, minid=min_id, approximate=False)


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
