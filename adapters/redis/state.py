"""What the parts of a worker node share: its settings, client, counters and held jobs.

:class:`~adapters.redis.node.WorkerNode` is made of small parts, one job each: the intake
(reading and checking entries, cancel notices), the finisher (storing results), the beater
(heartbeats, leases, peers, take-overs, trimming). Each is a class over this state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from .conn import GROUP, Backoff, Keys
from .dispatch import Dispatcher, InFlight
from .features import FeatureCache
from .liveness import PeerTable
from .scripts import Scripts

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    import hybrid

    from .config import NodeConfig

log = logging.getLogger("hybrid.redis")

READ_BLOCK_MS = 500  # how long one XREADGROUP (or XREAD of cancels) waits for new entries
READ_BATCH = 512  # entries per read at most


class NodeState:
    """The fields a node's parts share (set by ``WorkerNode.__init__``)."""

    config: NodeConfig
    keys: Keys
    name: bytes
    registry: dict[str, Callable[..., Any]]
    counters: dict[str, int]
    features: FeatureCache
    beat_interval_s: float
    _client: aioredis.Redis
    _scripts: Scripts
    _engine: hybrid.Engine
    _dispatcher: Dispatcher
    _peers: PeerTable
    _beaten_at: float
    _inflight: dict[bytes, InFlight]
    _finished: list[InFlight]
    _finished_event: asyncio.Event
    _room: asyncio.Event
    _stopping: bool
    _closed: bool  # checked by the loops: redis-py may turn a cancel into an error
    _backoff: Backoff

    def _ackdel(self) -> bytes:
        """The scripts' flag: acknowledge with XACKDEL ... ACKED (Redis 8.2+)."""
        return b"1" if self.features.current.ackdel else b""

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

    def _is_closed(self) -> bool:
        return self._closed
