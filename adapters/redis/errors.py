"""Errors of the Redis scale-out, beside the core's (all derive from ``HybridError``)."""

from __future__ import annotations

from hybrid import HybridError


class JobRejected(HybridError):
    """A worker refused the job and dead-lettered it (bad signature, unknown function, ...)."""


class RedisFault(HybridError):
    """Redis refused a command the scale-out needs (out of memory, a read-only replica,
    a key of the wrong type, no permission...); ``redis_error`` is the server's words.

    A call fails with it rather than wait for an answer that cannot come.
    """

    def __init__(self, doing: str, redis_error: BaseException | str) -> None:
        self.redis_error = str(redis_error)
        super().__init__(f"Redis refused to {doing}: {self.redis_error}")
