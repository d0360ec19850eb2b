"""Errors of the Redis scale-out, beside the core's (all derive from ``HybridError``)."""

from __future__ import annotations

from hybrid import HybridError


class JobRejected(HybridError):
    """A worker refused the job and dead-lettered it (bad signature, unknown function, ...)."""
