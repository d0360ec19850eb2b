"""How a worker node behaves: the ``hybrid worker`` options as one frozen record."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .codec import DEFAULT_MAX_ENTRY_BYTES, secret_from
from .liveness import Detector

REPLAY_WINDOW_S = 60.0  # a signed job sent longer ago than this is refused as a replay
TRIM_INTERVAL_S = 2.0  # how often to trim acknowledged entries off the job stream


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
