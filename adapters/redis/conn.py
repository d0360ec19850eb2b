"""Connections that never hang silently, key names, and reconnecting with backoff."""

from __future__ import annotations

import asyncio
import random
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ConnectionError as RedisConnectionError,
    MasterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError as RedisTimeoutError,
    TryAgainError,
)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 3.0
SOCKET_TIMEOUT_S = 10.0  # must exceed the longest BLOCK we ask for
KEEPALIVE_IDLE_S = 5  # TCP keepalive: a dead peer is noticed within ~idle + interval * count
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_COUNT = 3
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
GROUP = b"workers"
QUEUE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Redis being unreachable or restarting, as opposed to a wrong command.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


# Redis answering "no" to our credentials, at login or (revoked mid-run) at any command:
# never an outage to wait out. redis-py derives the first two from its ConnectionError and
# NOPERM from ResponseError, so they must be caught before those.
REFUSED_ERRORS: tuple[type[BaseException], ...] = (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
)


def describe_refusal(exc: BaseException) -> str:
    """The server's words: redis-py wraps an error inside a pipeline in the whole command."""
    text = str(exc)
    _, wrapped, inner = text.partition(" of pipeline caused error: ")
    return inner.strip("(),'\"") if wrapped else text


def redact(url: str) -> str:
    """The URL with its password (and user name) replaced, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


# Refusals that may pass once Redis frees memory, finishes loading, or fails over.
PASSING_REFUSALS = ("OOM", "LOADING", "READONLY", "BUSY", "MASTERDOWN", "TRYAGAIN")
# redis-py turns these codes into exception classes and drops the code from the message.
_CODES: dict[type[BaseException], str] = {
    OutOfMemoryError: "OOM",
    ReadOnlyError: "READONLY",
    NoPermissionError: "NOPERM",
    BusyLoadingError: "LOADING",
    TryAgainError: "TRYAGAIN",
    MasterDownError: "MASTERDOWN",
}


def refusal_code(exc: BaseException) -> str:
    """The Redis error code of a refusal (``OOM``, ``WRONGTYPE``...), or ``""``."""
    for kind, code in _CODES.items():
        if isinstance(exc, kind):
            return code
    first = describe_refusal(exc).split(" ", 1)[0]
    return first if first.isupper() else ""


def may_pass(exc: BaseException) -> bool:
    """Whether Redis refused for a reason that may pass (worth a bounded retry)."""
    return refusal_code(exc) in PASSING_REFUSALS


def named_refusal(exc: BaseException) -> str:
    """The server's words, led by the error code (``"OOM command not allowed..."``)."""
    text, code = describe_refusal(exc), refusal_code(exc)
    return text if not code or text.startswith(code) else f"{code} {text}"


def is_loading(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and str(exc).startswith("LOADING")


@dataclass(frozen=True, slots=True)
class Keys:
    """Every key of one cluster, sharing a hash tag so scripts may touch them together."""

    prefix: str
    queue: str = ""  # a named queue (``hybrid worker --queue parse``); "" is the default one

    def __post_init__(self) -> None:
        if self.queue and not QUEUE_NAME.fullmatch(self.queue):
            raise ValueError(
                f"a queue name is letters, digits, '.', '_' or '-', not {self.queue!r}"
            )

    def _key(self, name: str) -> bytes:
        return f"{{{self.prefix}}}:{name}".encode()

    @property
    def jobs(self) -> bytes:
        return self._key(f"jobs:{self.queue}" if self.queue else "jobs")

    @property
    def cancels(self) -> bytes:
        """Where clients say a job's caller stopped waiting (every node reads it)."""
        return self._key("cancels")

    @property
    def dead(self) -> bytes:
        return self._key("dead")

    @property
    def beats(self) -> bytes:
        return self._key("beats")

    @property
    def reply_prefix(self) -> bytes:
        return self._key("reply:")

    def reply(self, client_id: str) -> bytes:
        return self.reply_prefix + client_id.encode()

    def seen(self, bucket: int) -> bytes:
        """The replay-protection hash of one time bucket."""
        return self._key(f"seen:{bucket}")


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client with connect and socket timeouts and TCP keepalive (``rediss://`` and ACLs work)."""
    keepalive: dict[int, int] = {}
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        if hasattr(socket, name):
            keepalive[getattr(socket, name)] = value
    options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT_S)
    options.setdefault("socket_timeout", SOCKET_TIMEOUT_S)
    options.setdefault("socket_keepalive", True)
    options.setdefault("socket_keepalive_options", keepalive)
    options.setdefault("health_check_interval", 15)
    return aioredis.Redis.from_url(url, decode_responses=False, **options)


class Backoff:
    """Exponential backoff with jitter, reset after a success."""

    def __init__(self, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    async def wait(self) -> None:
        delay_s = min(self.max_s, self.first_s * 2**self.failures)
        self.failures += 1
        await asyncio.sleep(delay_s * random.uniform(0.5, 1.0))


async def server_run_id(client: aioredis.Redis) -> bytes:
    """The server's run id: it changes when Redis restarts (and may have lost everything)."""
    info = await client.info("server")
    return str(info.get("run_id", "")).encode()


async def retrying(
    operation: Callable[[], Awaitable[T]], backoff: Backoff, stopping: Callable[[], bool]
) -> T | None:
    """Run ``operation`` until it succeeds, waiting out Redis outages; None if told to stop."""
    while not stopping():
        try:
            result = await operation()
        except REFUSED_ERRORS:
            raise
        except TRANSIENT_ERRORS:
            await backoff.wait()
        except ResponseError as exc:
            if not is_loading(exc):
                raise
            await backoff.wait()
        else:
            backoff.reset()
            return result
    return None
