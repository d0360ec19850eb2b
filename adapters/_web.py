"""What the web adapters (aiohttp, Starlette) share, free of any web framework."""

from __future__ import annotations

import math

import hybrid

MAX_RETRY_AFTER_S = 60  # cap on the Retry-After hint of a 503
# Workers' niceness unless the app says otherwise. When the workers fill every core, a
# request (or a health check) waits for the scheduler to hand this process a core; at a
# lower priority the workers give it up at once, and they still get all the CPU left.
WORKER_NICE = 10


def retry_after_s(engine: hybrid.Engine, pool: str = "default") -> int:
    """Whole seconds until the pool's queue has probably drained: queued x median task
    time / workers, at least 1 and at most ``MAX_RETRY_AFTER_S``."""
    try:
        stats = engine.stats(pool)
    except hybrid.EngineClosed:
        return MAX_RETRY_AFTER_S
    task_s = stats.task_p50_s or 0.0
    drain_s = stats.queued * task_s / max(1, stats.workers)
    return max(1, min(MAX_RETRY_AFTER_S, math.ceil(drain_s)))
