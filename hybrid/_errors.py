"""Every error hybrid raises on its own account, under one base.

A task's own exception reaches the caller unchanged (its type intact, the worker's
traceback as ``__cause__``, a :class:`RemoteTraceback`). What hybrid itself raises derives
from :class:`HybridError`, and also from the builtin it resembles, so ``except TimeoutError``
catches a :class:`TaskTimeout`::

    HybridError
    ├── TaskTimeout         (TimeoutError)     a task ran past its timeout
    ├── WorkerCrashed                          the worker died while running the task
    ├── EngineClosed        (RuntimeError)     the engine no longer takes work
    ├── Overloaded                             the queue is full and the caller would not wait
    ├── NotPicklable        (TypeError)        a function, argument or result cannot cross processes
    ├── RemoteError                            a task's exception could not cross back whole
    ├── WorkerStartError                       a worker could not start (its initializer failed)
    ├── MemoryLimitExceeded (MemoryError)      a call passed its pool's hard memory limit
    ├── IsolationError      (OSError)          a worker could not pin, limit or renice itself
    ├── LockTimeout         (TimeoutError)     hybrid.shared.NamedLock: not acquired in time
    ├── LeaseReleased       (RuntimeError)     hybrid.shared: a large result's lease was let go
    ├── OptimisticConflict  (RuntimeError)     hybrid.shared.Sink: other writers kept winning
    ├── RejectedMessage     (ValueError)       hybrid.messaging: a message was refused
    ├── TransportClosed     (ConnectionError)  hybrid.messaging: the transport is closed
    └── UnknownPeer         (LookupError)      hybrid.messaging: no peer at that address

Adapters add their own, on the same base: ``adapters.redis.JobRejected`` (a node refused a
job) and ``adapters.sqlite.SchemaTooNew`` (a database written by a newer program).
"""

from __future__ import annotations

import signal


class HybridError(Exception):
    """Base of every error the engine raises on its own account."""


class TaskTimeout(HybridError, TimeoutError):
    """The task ran longer than its ``timeout``; its worker was killed and replaced.

    Attributes:
        task_id: the engine's id of the task (``Task.id``; on worker log records too),
            once the error reaches ``Engine.run``'s caller.
    """

    task_id: int | None = None

    def __init__(self, task_name: str, timeout_s: float) -> None:
        super().__init__(f"{task_name} ran longer than its timeout of {timeout_s:g} s")
        self.task_name = task_name
        self.timeout_s = timeout_s


class WorkerCrashed(HybridError):
    """The worker process died while running the task.

    Attributes:
        exitcode: the process's exit code, or ``-N`` when signal ``N`` killed it.
        pid: the worker's process id.
        attempts: how many times the task was run (1 plus the retries used).
        reason: None when the worker died on its own; ``"hung"`` when the engine killed it
            because it stopped responding (no heartbeat, no CPU progress).
        task_id: the engine's id of the task (``Task.id``; on worker log records too),
            once the error reaches ``Engine.run``'s caller.
    """

    task_id: int | None = None

    def __init__(
        self,
        task_name: str,
        exitcode: int | None,
        pid: int | None,
        attempts: int,
        reason: str | None = None,
    ) -> None:
        self.task_name = task_name
        self.exitcode = exitcode
        self.pid = pid
        self.attempts = attempts
        self.reason = reason
        how = "was killed: it stopped responding" if reason == "hung" else "died"
        super().__init__(
            f"worker {pid} {how} running {task_name} ({describe_exit(exitcode)}); "
            f"attempts: {attempts}"
        )

    @property
    def signal(self) -> int | None:
        """The signal number that killed the worker, if a signal did."""
        if self.exitcode is not None and self.exitcode < 0:
            return -self.exitcode
        return None


class EngineClosed(HybridError, RuntimeError):
    """The engine is closed or closing and takes no new work."""


class Overloaded(HybridError):
    """The engine takes no more work now and the caller asked not to wait for room.

    Either the queue is full (``max_queued``) or intake is paused (``paused_because``,
    e.g. memory pressure).
    """

    def __init__(
        self, queued: int, max_queued: int | None, paused_because: str | None = None
    ) -> None:
        if paused_because is not None:
            message = f"intake is paused: {paused_because}"
        else:
            message = f"{queued} tasks already queued (max_queued={max_queued})"
        super().__init__(message)
        self.queued = queued
        self.max_queued = max_queued
        self.paused_because = paused_because


class NotPicklable(HybridError, TypeError):
    """A function, argument or result cannot be sent between processes."""


class RemoteError(HybridError):
    """The task raised an exception that could not be sent back whole; its text is kept."""


class RemoteTraceback(Exception):
    """The traceback of a task's exception as the worker saw it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class WorkerStartError(HybridError):
    """A worker process could not start, e.g. because its initializer raised."""


class MemoryLimitExceeded(HybridError, MemoryError):
    """A task passed its worker's hard memory limit; only that task failed.

    Attributes:
        task_name: the function that ran.
        limit_bytes: the limit it passed.
        pid: the worker it ran in (replaced afterwards).
        how: ``"RLIMIT_AS"`` when an allocation was refused, ``"killed"`` when the
            engine killed the worker for memory (the task was then run again).
    """

    def __init__(self, task_name: str, limit_bytes: int, pid: int | None, how: str) -> None:
        self.task_name = task_name
        self.limit_bytes = limit_bytes
        self.pid = pid
        self.how = how
        verb = "was refused memory past" if how == "RLIMIT_AS" else "was killed past"
        super().__init__(
            f"{task_name} in worker {pid} {verb} its memory limit of "
            f"{limit_bytes / (1 << 20):.0f} MB ({how}); the worker is replaced"
        )

    def __reduce__(self) -> tuple[type[MemoryLimitExceeded], tuple[str, int, int | None, str]]:
        return type(self), (self.task_name, self.limit_bytes, self.pid, self.how)


class IsolationError(HybridError, OSError):
    """A worker could not apply the isolation it was asked for (e.g. no pinning here)."""


class LockTimeout(HybridError, TimeoutError):
    """The lock was not acquired within the timeout."""


class LeaseReleased(HybridError, RuntimeError):
    """The parent released the call's lease before the worker could return its result."""


class OptimisticConflict(HybridError, RuntimeError):
    """Other writers kept winning; the records were not written."""


class RejectedMessage(HybridError, ValueError):
    """A received message was refused; ``reason`` says why (also counted by the codec).

    Reasons: ``oversized``, ``truncated``, ``bad_magic``, ``unknown_version``, ``unsigned``,
    ``bad_signature``, ``malformed``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"message rejected: {reason}")
        self.reason = reason


class TransportClosed(HybridError, ConnectionError):
    """The transport was closed; nothing more can be sent or received on it."""


class UnknownPeer(HybridError, LookupError):
    """No peer is reachable at the destination address."""


def describe_exit(exitcode: int | None) -> str:
    """Say how a process ended, naming the signal when one killed it."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exit code {exitcode}"
