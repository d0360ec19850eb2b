"""The client side: submit jobs to a Redis-backed cluster and await their results.

Jobs go to the cluster's job stream (``XADD``, pipelined: every job submitted in one loop
iteration goes in one round trip); results come back on this client's own reply stream
(``XREAD``). Each job is remembered until its result arrives: when Redis restarts, the
results it kept are read again and every job whose entry it lost is submitted again, so
none is lost and none that survived runs twice.

Faults surface: a refusal by Redis (out of memory, a read-only replica, a key of the wrong
type, no permission) fails the calls it concerns with :class:`RedisFault` after a bounded
retry, never a silent wait; nothing queued is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, TypeVarTuple

import msgpack  # type: ignore[import-untyped]
from redis.exceptions import ResponseError

from hybrid import EngineClosed

from .codec import (
    DEFAULT_MAX_ENTRY_BYTES,
    MSGPACK,
    PICKLE,
    Fields,
    Rejected,
    decode_result,
    encode_cancel,
    encode_job,
    rebuild_remote_error,
    secret_from,
)
from .conn import (
    TRANSIENT_ERRORS,
    Backoff,
    Keys,
    connect,
    is_loading,
    may_pass,
    named_refusal,
    server_run_id,
)
from .dispatch import task_name
from .errors import RedisFault
from .liveness import (
    PeerTable,
    PeerView,
    beat_value,
    group_detectors,
    negotiated_interval,
    peer_views,
)

log = logging.getLogger("hybrid.redis")

R = TypeVar("R")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

READ_BLOCK_MS = 1000  # how long one XREAD of the reply stream waits
READ_BATCH = 2048  # result entries per XREAD at most
REPLY_TTL_MS = 600_000  # the reply stream outlives a vanished client by this much
REMEMBERED_RESULTS = 100_000  # job ids kept to count duplicate results
DEFAULT_CHUNK_CALLS = 256  # calls per entry on the batched path
DEFAULT_WINDOW_ENTRIES = 32  # entries in flight per map() on the batched path


FLUSH_TRIES = 4  # sends of a job Redis refused for a reason that may pass (OOM, READONLY)
DEAD_AFTER_S = 2.0  # the least silence after which this client judges a node dead
CANCELS_KEPT = 10_000  # cancel notices kept in their stream (approximately)
FAULT_PATIENCE_S = 10.0  # how long Redis may refuse our beats before outstanding calls fail


@dataclass(eq=False)
class _Outstanding:
    fields: Fields
    future: asyncio.Future[list[Any]]
    stream: bytes  # the job stream of its queue
    entry_id: bytes | None = None  # the job stream's id for it, once Redis took it
    tries: int = 0  # sends Redis refused


class RedisEngine:
    """Run functions on ``hybrid worker`` nodes through Redis Streams.

    The surface follows :class:`hybrid.Engine`: ``run`` returns the value or raises the
    task's own exception (type intact when this process has imported it, the worker's
    traceback as ``__cause__``), :class:`hybrid.TaskTimeout` or
    :class:`hybrid.WorkerCrashed`; ``map`` and ``run_batch`` carry many calls per stream
    entry. Delivery is at least once: a job whose node dies runs again elsewhere.

    Args:
        url: the Redis URL (``redis://``, ``rediss://``, with ACL user and password).
        prefix: the cluster's key prefix; nodes must use the same.
        codec: ``"msgpack"`` (the default: plain data only) or ``"pickle"`` (needs
            ``secret``; every entry is HMAC-signed).
        secret: the shared HMAC key; defaults to the ``HYBRID_SECRET`` environment variable.
        chunk_calls: calls per stream entry on the batched path.
        beat_interval_s: how often the client beats (and checks whether Redis restarted)
            until the nodes ask for another interval (at most 3 beats a second).
        fault_patience_s: how long Redis may refuse this client's writes (out of memory, a
            read-only replica) before its outstanding calls fail with :class:`RedisFault`.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "hybrid",
        codec: str = "msgpack",
        secret: bytes | str | None = None,
        chunk_calls: int = DEFAULT_CHUNK_CALLS,
        beat_interval_s: float = 0.5,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        fault_patience_s: float = FAULT_PATIENCE_S,
    ) -> None:
        if codec not in ("msgpack", "pickle"):
            raise ValueError(f"codec must be 'msgpack' or 'pickle', not {codec!r}")
        self._secret = secret_from(
            secret if secret is not None else os.environ.get("HYBRID_SECRET")
        )
        self._codec = PICKLE if codec == "pickle" else MSGPACK
        if self._codec == PICKLE and not self._secret:
            raise ValueError("codec='pickle' needs a shared secret (secret= or HYBRID_SECRET)")
        self.url = url
        self.keys = Keys(prefix)
        self.client_id = uuid.uuid4().hex
        self.chunk_calls = chunk_calls
        self.beat_interval_s = beat_interval_s
        self.max_entry_bytes = max_entry_bytes
        self.fault_patience_s = fault_patience_s
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "submitted",
                "results",
                "duplicate_results",
                "resubmitted",
                "restarts_seen",
                "cancelled",
            ),
            0,
        )
        self._reply_key = self.keys.reply(self.client_id)
        self._client = connect(url)
        self._outstanding: dict[bytes, _Outstanding] = {}
        self._settled: OrderedDict[bytes, None] = OrderedDict()
        self._to_send: list[_Outstanding] = []
        self._cancelling: set[asyncio.Task[None]] = set()
        self._flushing: asyncio.Task[None] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._run_id: bytes | None = None
        self._last_read = b"0-0"
        self._closed = False
        self._fault: RedisFault | None = None  # the reply stream cannot be read: calls fail
        self._refused_since: float | None = None  # monotonic time beats began to be refused
        self._beaten = False  # a beat of ours has been stored
        self._peers = PeerTable(group_detectors(beat_interval_s, DEAD_AFTER_S))
        self._beat_every_s = negotiated_interval(beat_interval_s)  # as the nodes ask

    # Life cycle

    async def start(self) -> None:
        """Connect and start reading results (done by ``async with``)."""
        if self._loops:
            return
        self._run_id = await server_run_id(self._client)
        self._loops = [
            asyncio.create_task(self._read_loop()),
            asyncio.create_task(self._beat_loop()),
        ]

    async def close(self) -> None:
        """Stop; jobs still outstanding fail with :class:`hybrid.EngineClosed`."""
        if self._closed:
            return
        self._closed = True
        if self._cancelling:  # the nodes hear of every call withdrawn before we go
            await asyncio.gather(*self._cancelling, return_exceptions=True)
        for task in [*self._loops, *([self._flushing] if self._flushing else [])]:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for item in self._outstanding.values():
            if not item.future.done():
                item.future.set_exception(EngineClosed("the Redis engine is closed"))
        self._outstanding.clear()
        with contextlib.suppress(*TRANSIENT_ERRORS, ResponseError):
            await self._client.delete(self._reply_key)
            await self._client.hdel(self.keys.beats, self._beat_name)
        await self._client.aclose()

    async def __aenter__(self) -> RedisEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Work

    async def run(
        self,
        fn: Callable[[*Ts], R],
        *args: *Ts,
        timeout: float | None = None,
        deadline: float | None = None,
        retries: int | None = None,
        queue: str = "",
    ) -> R:
        """Run ``fn(*args)`` on some node and return its result.

        ``fn`` must be a public module-level function of a module the nodes imported
        (``--import``); it is sent by name. Arguments and result must be msgpack data
        (or anything picklable with ``codec="pickle"``).

        Args:
            timeout: seconds the call may run on its node; past it the node's process is
                killed and :class:`hybrid.TaskTimeout` raised.
            deadline: seconds from now by which the result must be ready; the node
                drops the job unrun if it arrives later and cuts its run time to what is
                left (on the client's clock: each node moves it onto its own by the
                offset this client's beats show).
            retries: times the job may run again after the node running it died (it is
                delivered at most ``retries + 1`` times, then fails with
                :class:`JobRejected`); None leaves it to the nodes' ``--max-deliveries``.
            queue: the named queue to send it to, served by the nodes started with
                ``hybrid worker --queue NAME``; "" is the default queue.

        Raises:
            The task's exception, :class:`hybrid.TaskTimeout`, :class:`hybrid.WorkerCrashed`,
            :class:`JobRejected` (a node refused the job), :class:`RedisFault` (Redis
            refused it) or :class:`hybrid.EngineClosed`.

        Cancellation: the job is withdrawn: taken off the stream if no node has it yet,
        else the node running it stops it (its worker is killed and replaced).
        """
        if retries is not None and (not isinstance(retries, int) or retries < 0):
            raise ValueError(f"retries must be a whole number >= 0 or None, not {retries!r}")
        (outcome,) = await self._submit(
            task_name(fn), [tuple(args)], timeout, deadline,
            max_deliveries=None if retries is None else retries + 1, queue=queue,
        )  # fmt: skip
        return _value(outcome)  # type: ignore[no-any-return]

    async def run_batch(
        self,
        fn: Callable[..., R],
        calls: Iterable[tuple[Any, ...]],
        *,
        timeout: float | None = None,
    ) -> list[R]:
        """Run ``fn(*args)`` for every tuple in ``calls``, many per stream entry.

        Returns the results in order; raises the first failing call's exception once all
        have settled.
        """
        name = task_name(fn)
        all_calls = [tuple(args) for args in calls]
        size = self.chunk_calls
        chunks = [all_calls[k : k + size] for k in range(0, len(all_calls), size)]
        replies = await asyncio.gather(*(self._submit(name, c, timeout, None) for c in chunks))
        return [_value(outcome) for reply in replies for outcome in reply]

    async def map(
        self,
        fn: Callable[[T], R],
        iterable: Iterable[T] | AsyncIterable[T],
        *,
        ordered: bool = True,
        timeout: float | None = None,
        window: int | None = None,
    ) -> AsyncIterator[R]:
        """Yield ``fn(item)`` for each item, ``chunk_calls`` items per stream entry.

        At most ``window`` entries are in flight at once. Leaving the loop early stops
        waiting for the rest.
        """
        name = task_name(fn)
        limit = window or DEFAULT_WINDOW_ENTRIES
        waiting: list[asyncio.Task[list[Any]]] = []
        chunk: list[tuple[Any, ...]] = []
        try:
            async for item in _iterate(iterable):
                chunk.append((item,))
                if len(chunk) >= self.chunk_calls:
                    waiting.append(asyncio.create_task(self._submit(name, chunk, timeout, None)))
                    chunk = []
                while len(waiting) >= limit:
                    for value in await _next_done(waiting, ordered):
                        yield value
            if chunk:
                waiting.append(asyncio.create_task(self._submit(name, chunk, timeout, None)))
            while waiting:
                for value in await _next_done(waiting, ordered):
                    yield value
        finally:
            for task in waiting:
                task.cancel()

    def stats(self) -> dict[str, int]:
        """Counters: submitted jobs, results, duplicate results, resubmissions, restarts."""
        return {**self.counters, "outstanding": len(self._outstanding)}

    # Submitting

    async def _submit(
        self,
        fn_name: str,
        calls: list[tuple[Any, ...]],
        timeout: float | None,
        deadline: float | None,
        *,
        max_deliveries: int | None = None,
        queue: str = "",
    ) -> list[Any]:
        if self._closed:
            raise EngineClosed("the Redis engine is closed")
        if self._fault is not None:
            raise self._fault
        if not self._loops:
            await self.start()
        stream = Keys(self.keys.prefix, queue).jobs
        job_id = secrets.token_hex(16).encode()  # 128 random bits: nobody can answer it early
        now_ns = time.time_ns()
        deadline_ns = None if deadline is None else now_ns + int(deadline * 1e9)
        fields = encode_job(
            job_id,
            fn_name,
            calls,
            reply_key=self._reply_key,
            codec=self._codec,
            secret=self._secret,
            timeout_s=timeout,
            deadline_ns=deadline_ns,
            sent_ns=now_ns,
            max_deliveries=max_deliveries,
        )
        size = sum(len(k) + len(v) for k, v in fields.items())
        if size > self.max_entry_bytes:
            raise ValueError(f"job of {size} bytes exceeds max_entry_bytes={self.max_entry_bytes}")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        item = self._outstanding[job_id] = _Outstanding(fields, future, stream)
        self._send(item)
        self.counters["submitted"] += 1
        try:
            return await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                self._withdraw(job_id, item)
            raise
        finally:
            self._outstanding.pop(job_id, None)

    def _withdraw(self, job_id: bytes, item: _Outstanding) -> None:
        """The caller stopped waiting: take the job off the stream, or tell its node."""
        if self._closed:  # the client is going: nothing more is sent on its connection
            return
        if item in self._to_send:
            self._to_send.remove(item)
            return
        task = asyncio.get_running_loop().create_task(self._send_cancel(job_id, item))
        self._cancelling.add(task)
        task.add_done_callback(self._cancelling.discard)

    async def _send_cancel(self, job_id: bytes, item: _Outstanding) -> None:
        self.counters["cancelled"] += 1
        with contextlib.suppress(*TRANSIENT_ERRORS, ResponseError):
            async with self._client.pipeline(transaction=False) as pipe:
                if item.entry_id is not None:  # unread: no node will ever see it
                    pipe.xdel(item.stream, item.entry_id)
                pipe.xadd(
                    self.keys.cancels, encode_cancel(job_id, self._secret),  # type: ignore[arg-type]
                    maxlen=CANCELS_KEPT, approximate=True,
                )  # fmt: skip
                await pipe.execute()

    def _send(self, item: _Outstanding) -> None:
        self._to_send.append(item)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        """Send everything queued, one pipeline per round, waiting out Redis outages.

        A job Redis refuses is sent again a few times when the refusal may pass (memory
        freed, a failover done), then its call fails with :class:`RedisFault`; never dropped.
        """
        backoff = Backoff()
        try:
            while self._to_send:
                batch = [item for item in self._to_send if not item.future.done()]
                self._to_send = []
                try:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for item in batch:
                            pipe.xadd(item.stream, item.fields)  # type: ignore[arg-type]
                        replies = await pipe.execute(raise_on_error=False)
                except TRANSIENT_ERRORS:
                    self._to_send = batch + self._to_send
                    await backoff.wait()
                    continue
                except Exception as exc:  # the flush must not die and strand its batch
                    replies = [exc] * len(batch)
                refused = self._settle_sends(batch, replies)
                if refused:
                    self._to_send = refused + self._to_send
                    await backoff.wait()
                else:
                    backoff.reset()
        finally:
            self._flushing = None

    def _settle_sends(self, batch: list[_Outstanding], replies: list[Any]) -> list[_Outstanding]:
        """Note the entry ids Redis gave; fail or keep for another try what it refused."""
        again = []
        for item, reply in zip(batch, replies, strict=True):
            if not isinstance(reply, BaseException):
                item.entry_id = bytes(reply)
                continue
            item.tries += 1
            if isinstance(reply, TRANSIENT_ERRORS) or (
                may_pass(reply) and item.tries < FLUSH_TRIES
            ):
                again.append(item)
            elif not item.future.done():
                item.future.set_exception(RedisFault("take the job", named_refusal(reply)))
        return again

    # Results

    async def _read_loop(self) -> None:
        backoff = Backoff()
        reads_since_trim = 0
        # Checked as well as cancellation: redis-py may turn a cancel into a ConnectionError.
        while not self._closed:
            try:
                reply: Any = await self._client.xread(
                    {self._reply_key: self._last_read}, count=READ_BATCH, block=READ_BLOCK_MS
                )
            except TRANSIENT_ERRORS:
                await backoff.wait()
                continue
            except ResponseError as exc:
                if not is_loading(exc):
                    self._fail_all(RedisFault("read the results", named_refusal(exc)))
                    return
                await backoff.wait()
                continue
            backoff.reset()
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._last_read = entry_id
                    self._take(fields)
                reads_since_trim += len(entries)
            if reads_since_trim >= READ_BATCH or (reads_since_trim and not reply):
                reads_since_trim = 0
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    await self._client.xtrim(self._reply_key, minid=self._last_read)

    def _fail_all(self, fault: RedisFault) -> None:
        """The reply stream cannot be read: fail every call now, and every later one."""
        self._fault = fault
        self._fail_outstanding(fault)

    def _fail_outstanding(self, fault: RedisFault) -> None:
        for item in list(self._outstanding.values()):
            if not item.future.done():
                item.future.set_exception(fault)

    def _take(self, fields: dict[bytes, bytes]) -> None:
        try:
            job_id, outcomes = decode_result(fields, self._secret)
        except (Rejected, KeyError, ValueError, TypeError):
            return
        self.counters["results"] += 1
        if job_id in self._settled:
            self.counters["duplicate_results"] += 1
            return
        self._settled[job_id] = None
        if len(self._settled) > REMEMBERED_RESULTS:
            self._settled.popitem(last=False)
        item = self._outstanding.get(job_id)
        if item is not None and not item.future.done():
            item.future.set_result(outcomes)

    # Liveness and restarts

    @property
    def _beat_name(self) -> bytes:
        return f"client:{self.client_id}".encode()

    async def _beat_loop(self) -> None:
        beaten_at = time.monotonic()
        while not self._closed:
            # On a schedule, not sleep-then-work: the beats keep the interval asked of us.
            await asyncio.sleep(max(0.0, beaten_at + self._beat_every_s - time.monotonic()))
            beaten_at = time.monotonic()
            try:
                await self._beat()
            except TRANSIENT_ERRORS:
                continue
            except ResponseError as exc:
                if not is_loading(exc):
                    self._beat_refused(exc)
            else:
                self._refused_since = None

    def _beat_refused(self, exc: ResponseError) -> None:
        """Redis refuses writes (out of memory, read-only): past our patience, calls fail,
        since no node can store their results either."""
        now = time.monotonic()
        if self._refused_since is None:
            self._refused_since = now
            log.warning("Redis refuses this client's beats: %s", named_refusal(exc))
        elif now - self._refused_since >= self.fault_patience_s:
            self._fail_outstanding(RedisFault("store beats and results", named_refusal(exc)))

    async def _beat(self) -> None:
        value = beat_value(
            time.time_ns(), self._beat_every_s, "client", self._secret, self._beat_name,
            self._peers.asks(roles=("node",)),
        )  # fmt: skip
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.beats, self._beat_name, msgpack.packb(value))
            pipe.pexpire(self._reply_key, REPLY_TTL_MS)
            pipe.hgetall(self.keys.beats)
            new_beat, _, raw = await pipe.execute()
        self._judge_nodes(raw)
        beaten_before, self._beaten = self._beaten, True
        run_id = await server_run_id(self._client)
        if run_id != self._run_id:
            self._run_id = run_id
            self.counters["restarts_seen"] += 1
            await self._recover_after_restart()
        elif new_beat and beaten_before:
            # Our beat was gone: a node judged us gone (we were paused) and removed our
            # reply stream with it. Take what is left and send again what was lost.
            await self._recover_after_restart()

    def _judge_nodes(self, raw: dict[bytes, bytes]) -> None:
        """Feed every node's beat to its detector; beat at what the nodes ask of us."""
        beats: dict[bytes, Any] = {}
        for name, packed in raw.items():
            with contextlib.suppress(Exception):
                beat = msgpack.unpackb(packed)
                if isinstance(beat, list) and len(beat) > 2 and beat[2] == "node":
                    beats[bytes(name)] = beat
        self._peers.update(beats, time.time(), self._secret)
        for name in [name for name in self._peers.peers if name not in beats]:
            self._peers.forget(name)
        self._beat_every_s = self._peers.asked_of(self._beat_name, self.beat_interval_s)

    def peers(self) -> list[PeerView]:
        """Every node this client judges: state, clock offset, last transit, the interval
        asked of it and the interval it asks of this client."""
        return peer_views(self._peers, self._beat_name, time.time())

    async def _recover_after_restart(self) -> None:
        """Redis restarted: take the results it kept, resend only the jobs it lost.

        With persistence on, the job stream, its pending list and the reply stream survive
        a restart (a job's result and its acknowledgement are written together), so a job
        whose entry is still in the stream, or whose result is, must not run again.
        """
        kept: Any = await self._client.xrange(self._reply_key, min="-", max="+")
        for entry_id, fields in kept:
            self._last_read = max(self._last_read, entry_id, key=_stream_order)
            self._take(fields)
        waiting = [
            (item, item.entry_id)
            for item in self._outstanding.values()
            if not item.future.done() and item.entry_id is not None
        ]
        async with self._client.pipeline(transaction=False) as pipe:
            for item, entry_id in waiting:
                pipe.xrange(item.stream, min=entry_id, max=entry_id)
            found = await pipe.execute()
        for (item, _), entries in zip(waiting, found, strict=True):
            if not entries and not item.future.done():
                self.counters["resubmitted"] += 1
                item.entry_id = None
                self._send(item)


def _stream_order(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def _value(outcome: Any) -> Any:
    if outcome[0] == 1:
        return outcome[1]
    raise rebuild_remote_error(outcome[1])


async def _iterate(iterable: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(iterable, AsyncIterable):
        async for item in iterable:
            yield item
    else:
        for item in iterable:
            yield item


async def _next_done(waiting: list[asyncio.Task[list[Any]]], ordered: bool) -> list[Any]:
    """The values of the next finished entry: the oldest (ordered) or the first done."""
    if ordered:
        task = waiting.pop(0)
    else:
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        task = done.pop()
        waiting.remove(task)
    return [_value(outcome) for outcome in await task]
