"""A node's intake: entries read from the job stream, checked, run or dead-lettered; and
the cancel notices that stop a job whose caller stopped waiting."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from redis.exceptions import ResponseError

from .codec import (
    Fields,
    Job,
    Rejected,
    decode_cancel,
    decode_job,
    describe_error,
    encode_result,
)
from .conn import GROUP, REFUSED_ERRORS, TRANSIENT_ERRORS, is_loading, retrying
from .dispatch import InFlight
from .errors import JobRejected
from .state import READ_BATCH, READ_BLOCK_MS, NodeState, log

DEAD_LETTER_MAX_LEN = 10_000  # approximate cap of the dead-letter stream
DEAD_LETTER_COPY_BYTES = 4096  # a letter keeps the entry's fields only up to this size,
# so the dead-letter stream holds at most about 10,000 x 4 KiB = 40 MiB whatever is sent


class Intake(NodeState):
    """Reads entries as room allows and hands the good ones to the dispatcher."""

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
