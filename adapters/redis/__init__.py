"""Scale-out over Redis Streams: a client engine and ``hybrid worker`` nodes.

Clients submit jobs to ``{prefix}:jobs``; nodes read it with one consumer group, run each
job on their own local :class:`hybrid.Engine`, store the result on the client's reply
stream and acknowledge the entry in one atomic step. Nodes heartbeat; a node judged dead
has its pending entries claimed at once by a live one. Works with Redis 7.0 and later; on
Redis 8.2+ a finished entry is acknowledged and deleted in one step (``XACKDEL ... ACKED``),
so the job stream holds only live work. Needs ``pip install 'hybrid-engine[redis]'``.

Example::

    async with RedisEngine("redis://127.0.0.1:6379/0") as engine:
        total = await engine.run(myapp.tasks.add, 1, 2)

and on each host: ``hybrid worker --redis redis://... --import myapp.tasks``.

:class:`RedisCache` keeps results of ``hybrid.Engine.run(fn, *args, cache=...)`` in Redis,
shared by every process and host (TTL, LRU bound, identical calls computed once).
"""

from __future__ import annotations

from .. import _identity  # noqa: F401  (first: one clear line if `adapters` is not ours)

# isort: split

try:
    import msgpack  # type: ignore[import-untyped]  # noqa: F401
    import redis.asyncio  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"adapters.redis needs {exc.name}: install it with pip install 'hybrid-engine[redis]'"
    ) from exc

from .cache import RedisCache
from .cli import worker_command
from .client import RedisEngine
from .conn import redact
from .dispatch import build_registry, task_name
from .errors import JobRejected, RedisFault
from .liveness import (
    Detector,
    PeerTable,
    PeerView,
    beat_value,
    group_detectors,
    redis_detector,
)
from .node import NodeConfig, WorkerNode
from .transport import RedisStreamTransport

__all__ = [
    "Detector",
    "JobRejected",
    "NodeConfig",
    "PeerTable",
    "PeerView",
    "RedisCache",
    "RedisEngine",
    "RedisFault",
    "RedisStreamTransport",
    "WorkerNode",
    "beat_value",
    "build_registry",
    "group_detectors",
    "redact",
    "redis_detector",
    "task_name",
    "worker_command",
]
