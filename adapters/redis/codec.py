"""Stream entries for jobs and results: msgpack by default, pickle only when HMAC-signed.

A job entry is a flat map of short byte fields (see :class:`JobFields`); a result entry
carries the job id and its per-call outcomes. Nothing here unpickles bytes whose HMAC
(SHA-256 over every other field, under ``HYBRID_SECRET``) does not check out.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]

from hybrid import (
    CallResult,
    EngineClosed,
    RemoteError,
    RemoteTraceback,
    TaskTimeout,
    WorkerCrashed,
)

from .errors import JobRejected

FORMAT_VERSION = b"1"
MSGPACK = b"m"
PICKLE = b"p"
DEFAULT_MAX_ENTRY_BYTES = 1 << 20  # an entry larger than this is dead-lettered unread
SIGNATURE_FIELD = b"s"
HANDBACKS_FIELD = b"n"  # deliveries of the job's earlier entries (it was handed back)
UNSIGNED_FIELDS = (SIGNATURE_FIELD, HANDBACKS_FIELD)

Fields = dict[bytes, bytes]


class Rejected(Exception):
    """An entry that must not be run: the reason goes to the dead-letter stream.

    ``trusted`` is False when the entry failed its signature: its reply key and job id
    are then the word of whoever wrote it, and nobody is told of the rejection.
    """

    def __init__(self, reason: str, *, trusted: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.trusted = trusted


def secret_from(value: bytes | str | None) -> bytes | None:
    """The HMAC key as bytes; an empty one is an error (it would sign with no key at all)."""
    if value is None:
        return None
    if not value:
        raise ValueError(
            "HYBRID_SECRET (or secret=) is set but empty: give a long random key, or unset it"
        )
    return value.encode() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Job:
    """A decoded job entry: ``len(calls)`` calls of the function named ``fn_name``."""

    job_id: bytes
    fn_name: str
    calls: list[tuple[Any, ...]]
    codec: bytes
    reply_key: bytes
    timeout_s: float | None
    deadline_ns: int | None
    earlier_deliveries: int
    fields: Fields
    sent_ns: int | None = None  # the client's wall clock when it sent the job
    max_deliveries: int | None = None  # the caller's own limit (retries + 1), if it set one


def sign(fields: Mapping[bytes, bytes], secret: bytes) -> bytes:
    """HMAC-SHA256 of every field but the signature and the hand-back count, in order.

    The hand-back count is written by the node that hands a job back, which may hold no
    key; forging it can only get a job dead-lettered sooner, which anyone who can write
    to the stream can do anyway (``XACK``, ``XDEL``).
    """
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for name in sorted(fields):
        if name not in UNSIGNED_FIELDS:
            mac.update(len(name).to_bytes(4, "big") + name)
            mac.update(len(fields[name]).to_bytes(4, "big") + fields[name])
    return mac.hexdigest().encode()


def check_signature(fields: Mapping[bytes, bytes], secret: bytes | None, required: bool) -> None:
    """Raise :class:`Rejected` unless the entry is signed with ``secret`` (when it must be)."""
    signature = fields.get(SIGNATURE_FIELD)
    if signature is None:
        if required:
            raise Rejected("unsigned", trusted=False)
        return
    if secret is None:
        raise Rejected("signed, but this node has no HYBRID_SECRET to check it", trusted=False)
    if not hmac.compare_digest(signature, sign(fields, secret)):
        raise Rejected("bad signature (tampered, or signed with another key)", trusted=False)


def encode_job(
    job_id: bytes,
    fn_name: str,
    calls: list[tuple[Any, ...]],
    *,
    reply_key: bytes,
    codec: bytes,
    secret: bytes | None,
    timeout_s: float | None,
    deadline_ns: int | None,
    earlier_deliveries: int = 0,
    sent_ns: int | None = None,
    max_deliveries: int | None = None,
) -> Fields:
    """The stream fields of a job; pickle needs ``secret`` and is always signed."""
    fields: Fields = {
        b"v": FORMAT_VERSION,
        b"j": job_id,
        b"f": fn_name.encode(),
        b"c": codec,
        b"a": dump_payload([list(args) for args in calls], codec),
        b"r": reply_key,
    }
    if timeout_s is not None:
        fields[b"t"] = repr(float(timeout_s)).encode()
    if deadline_ns is not None:
        fields[b"d"] = str(deadline_ns).encode()
    if sent_ns is not None:
        fields[b"w"] = str(sent_ns).encode()
    if max_deliveries is not None:
        fields[b"m"] = str(max_deliveries).encode()
    if earlier_deliveries:
        fields[HANDBACKS_FIELD] = str(earlier_deliveries).encode()
    return with_signature(fields, codec, secret)


def with_signature(fields: Fields, codec: bytes, secret: bytes | None) -> Fields:
    if codec == PICKLE and secret is None:
        raise ValueError("pickle payloads need a shared secret (HYBRID_SECRET) to sign them")
    if secret is not None:
        fields[SIGNATURE_FIELD] = sign(fields, secret)
    return fields


def decode_job(
    fields: Mapping[bytes, bytes] | None,
    *,
    secret: bytes | None,
    max_entry_bytes: int,
    reply_prefix: bytes,
) -> Job:
    """Check and decode a job entry, or raise :class:`Rejected` with the reason."""
    if not fields:
        raise Rejected("empty entry (deleted or trimmed before it was read)")
    size = sum(len(name) + len(value) for name, value in fields.items())
    if size > max_entry_bytes:
        raise Rejected(f"oversized: {size} bytes > max_entry_bytes={max_entry_bytes}")
    if fields.get(b"v") != FORMAT_VERSION:
        raise Rejected(f"unknown format version {fields.get(b'v')!r}")
    codec = fields.get(b"c")
    if codec not in (MSGPACK, PICKLE):
        raise Rejected(f"unknown codec {codec!r}")
    check_signature(fields, secret, required=codec == PICKLE or secret is not None)
    try:
        return _job_from(fields, codec, reply_prefix)
    except Rejected:
        raise
    except Exception as exc:
        raise Rejected(f"malformed: {type(exc).__name__}: {exc}") from None


def _job_from(fields: Mapping[bytes, bytes], codec: bytes, reply_prefix: bytes) -> Job:
    reply_key = fields[b"r"]
    if not reply_key.startswith(reply_prefix):
        raise Rejected(f"reply stream {reply_key!r} is outside {reply_prefix!r}")
    calls = load_payload(fields[b"a"], codec)
    if not isinstance(calls, list) or not all(isinstance(args, list | tuple) for args in calls):
        raise Rejected("malformed: arguments must be a list of argument lists")
    timeout = fields.get(b"t")
    deadline = fields.get(b"d")
    sent = fields.get(b"w")
    limit = fields.get(b"m")
    earlier = int(fields.get(HANDBACKS_FIELD, b"0"))
    if earlier < 0:
        raise Rejected(f"malformed: hand-back count {earlier} < 0")
    return Job(
        job_id=fields[b"j"],
        fn_name=fields[b"f"].decode(),
        calls=[tuple(args) for args in calls],
        codec=codec,
        reply_key=reply_key,
        timeout_s=None if timeout is None else float(timeout),
        deadline_ns=None if deadline is None else int(deadline),
        earlier_deliveries=earlier,
        fields=dict(fields),
        sent_ns=None if sent is None else int(sent),
        max_deliveries=None if limit is None else max(1, int(limit)),
    )


def dump_payload(value: Any, codec: bytes) -> bytes:
    if codec == PICKLE:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def load_payload(data: bytes, codec: bytes) -> Any:
    """Decode a payload whose signature (for pickle) was already checked."""
    if codec == PICKLE:
        return pickle.loads(data)
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)


# Results


def describe_outcome(result: CallResult[Any]) -> list[Any]:
    """A msgpack-friendly outcome: ``[1, value]`` or ``[0, error description]``."""
    if result.ok:
        return [1, result.value]
    if result.error is None:  # skipped: its batch was cancelled before it ran
        return [0, describe_error(EngineClosed("the call was cancelled"))]
    return [0, describe_error(result.error)]


def describe_error(error: BaseException) -> dict[str, Any]:
    """An exception as plain data: kind, type name, args, message and traceback text."""
    cause = error.__cause__
    text = (
        cause.text
        if isinstance(cause, RemoteTraceback)
        else "".join(traceback.format_exception(error))
    )
    kind = type(error)
    described: dict[str, Any] = {
        "type": f"{kind.__module__}:{kind.__qualname__}",
        "message": str(error),
        "traceback": text,
        "args": [arg for arg in error.args if isinstance(arg, str | int | float | bool | None)],
    }
    if isinstance(error, TaskTimeout):
        described.update(kind="timeout", task=error.task_name, timeout_s=error.timeout_s)
    elif isinstance(error, WorkerCrashed):
        described.update(
            kind="crashed",
            task=error.task_name,
            exitcode=error.exitcode,
            pid=error.pid,
            attempts=error.attempts,
            reason=error.reason,
        )
    else:
        described["kind"] = "task"
    return described


def encode_result(job_id: bytes, outcomes: list[Any], codec: bytes, secret: bytes | None) -> Fields:
    """The fields of a result entry; an unencodable value becomes an error outcome."""
    try:
        payload = dump_payload(outcomes, codec)
    except Exception as exc:
        outcomes = [
            item if item[0] == 0 or _encodable(item, codec) else _unencodable(item[1], exc)
            for item in outcomes
        ]
        payload = dump_payload(outcomes, codec)
    fields: Fields = {b"v": FORMAT_VERSION, b"j": job_id, b"c": codec, b"o": payload}
    return with_signature(fields, codec, secret)


def _encodable(item: list[Any], codec: bytes) -> bool:
    try:
        dump_payload(item, codec)
    except Exception:
        return False
    return True


def _unencodable(value: Any, exc: Exception) -> list[Any]:
    error = TypeError(
        f"the result ({type(value).__qualname__}) cannot be encoded for the result stream: {exc}"
    )
    return [0, {**describe_error(error), "kind": "unencodable"}]


def decode_result(fields: Mapping[bytes, bytes], secret: bytes | None) -> tuple[bytes, list[Any]]:
    """The job id and outcomes of a result entry, or :class:`Rejected`."""
    codec = fields.get(b"c")
    if fields.get(b"v") != FORMAT_VERSION or codec not in (MSGPACK, PICKLE):
        raise Rejected("unknown result format")
    # With a key, an unsigned result is anyone's: a forgery would settle the call early.
    check_signature(fields, secret, required=codec == PICKLE or secret is not None)
    outcomes = load_payload(fields[b"o"], codec)
    if not isinstance(outcomes, list):
        raise Rejected("malformed result")
    return fields[b"j"], outcomes


def rebuild_remote_error(described: Mapping[str, Any]) -> BaseException:
    """The exception a result describes, with the worker's traceback as ``__cause__``.

    The exception's type is looked up only among modules this process already imported
    (nothing is imported because a message named it); otherwise :class:`RemoteError`.
    """
    kind = described.get("kind")
    error: BaseException
    if kind == "timeout":
        error = TaskTimeout(str(described["task"]), float(described["timeout_s"]))
    elif kind == "crashed":
        error = WorkerCrashed(
            str(described["task"]),
            described.get("exitcode"),
            described.get("pid"),
            int(described.get("attempts") or 1),
            described.get("reason"),
        )
    elif kind == "rejected":
        error = JobRejected(str(described["message"]))
    else:
        error = _local_exception(described)
    error.__cause__ = RemoteTraceback(str(described.get("traceback", "")))
    return error


def _local_exception(described: Mapping[str, Any]) -> BaseException:
    module_name, _, qualname = str(described.get("type", "")).partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    message = str(described.get("message", ""))
    if isinstance(found, type) and issubclass(found, Exception):
        try:
            return found(*described.get("args", []))
        except Exception:
            pass
    return RemoteError(f"the task raised {qualname or 'an exception'}: {message}")


def encode_cancel(job_id: bytes, secret: bytes | None) -> Fields:
    """A notice that a job's caller stopped waiting: nodes stop its calls."""
    fields: Fields = {b"v": FORMAT_VERSION, b"j": job_id, b"c": MSGPACK}
    return with_signature(fields, MSGPACK, secret)


def decode_cancel(fields: Mapping[bytes, bytes], secret: bytes | None) -> bytes:
    """The job id of a cancel notice, or :class:`Rejected` (with a secret, it must verify)."""
    if fields.get(b"v") != FORMAT_VERSION or b"j" not in fields:
        raise Rejected("malformed cancel")
    check_signature(fields, secret, required=secret is not None)
    return fields[b"j"]
