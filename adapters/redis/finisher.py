"""A node's finisher: results stored and acknowledged in one script call per batch, only
while the node still owns their entries; a result Redis refuses is kept and tried again."""

from __future__ import annotations

import asyncio
from functools import partial

from redis.exceptions import ResponseError

from .codec import encode_result
from .conn import GROUP, REFUSED_ERRORS, retrying
from .dispatch import InFlight
from .state import NodeState, log

FINISH_BATCH = 512  # results per FINISH script call at most
REPLY_TTL_MS = 600_000  # a reply stream nobody reads any more expires after this
STORE_RETRY_S = 0.5  # pause before storing again results Redis refused to take


class Finisher(NodeState):
    """Stores finished jobs' results and acknowledges their entries."""

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
