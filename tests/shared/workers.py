"""Functions the shared-state tests run in worker processes (importable by every start method)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from hybrid.shared import Counter, NamedLock, SharedBytes, SharedValue, Sink

_state: dict[str, Any] = {}


def digest_of_handle(handle: SharedBytes) -> tuple[int, str, bool]:
    """Map a published buffer read-only: (pid, sha256, whether it is read-only)."""
    view = handle.view()
    return os.getpid(), hashlib.sha256(view).hexdigest(), view.readonly


def reverse_bytes(data: bytes) -> bytes:
    if not isinstance(data, bytes):
        raise TypeError(f"expected bytes, got {type(data).__qualname__}")
    return data[::-1]


def describe_args(data: Any, extra: Any) -> tuple[str, int, str]:
    return type(data).__qualname__, len(data), type(extra).__qualname__


def fail_with(data: bytes) -> None:
    raise ValueError(f"refused {len(data)} bytes")


def sleep_with(data: bytes, seconds: float) -> bytes:
    time.sleep(seconds)
    return data


def die_with(data: bytes) -> None:
    os._exit(3)


def add_many(counter: Counter, times: int) -> int:
    for _ in range(times):
        counter.add(1)
    return os.getpid()


def remember(**shared: Any) -> None:
    """An engine initializer: keep shared objects for the tasks of this worker."""
    _state.update(shared)


def remember_counter(counter: Counter) -> None:
    """An engine initializer taking the counter positionally (as ``initargs`` passes it)."""
    _state["counter"] = counter


def add_to_remembered(times: int) -> int:
    counter: Counter = _state["counter"]
    for _ in range(times):
        counter.add(1)
    return os.getpid()


def add_through_initializer(counter: Counter, times: int) -> None:
    """A process body that receives the counter the way an initializer would."""
    remember(counter=counter)
    add_to_remembered(times)


def add_to_value(value: SharedValue[int], times: int) -> None:
    for _ in range(times):
        value.add(1)


def increment_file_under_lock(lock: NamedLock, path: str, times: int) -> None:
    """A read-modify-write of a plain file that loses updates unless the lock excludes."""
    for _ in range(times):
        with lock.hold(timeout_s=30):
            file = Path(path)
            count = int(file.read_text() or "0")
            file.write_text(str(count + 1))


def hold_lock_forever(lock: NamedLock, ready_path: str) -> None:
    lock.acquire()
    Path(ready_path).write_text("held")
    time.sleep(3600)


def try_lock(lock: NamedLock, timeout_s: float) -> bool:
    acquired = lock.acquire(timeout_s)
    if acquired:
        lock.release()
    return acquired


def write_records(
    sink: Sink, writer: int, batches: int, batch_size: int, ack_path: str, pad_bytes: int = 200
) -> None:
    """Write numbered records; after each batch returns, append its ids to the ack file."""
    pad = "x" * pad_bytes
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for batch in range(batches):
            ids = [f"{writer}-{batch}-{index}" for index in range(batch_size)]
            sink.write_many({"id": record_id, "pad": pad} for record_id in ids)
            os.write(ack, ("\n".join(ids) + "\n").encode())
    finally:
        os.close(ack)


def slow_square(calls: Counter, x: int, seconds: float) -> int:
    """Count the call in a shared counter, then take ``seconds`` to square ``x``."""
    calls.add(1)
    time.sleep(seconds)
    return x * x


def slow_failure(calls: Counter, seconds: float) -> None:
    calls.add(1)
    time.sleep(seconds)
    raise KeyError("no such page")


def double_array(array: Any) -> Any:
    """A NumPy array arrives mapped read-only; the doubled result goes back the same way."""
    if array.flags.writeable:
        raise AssertionError("a shared argument must be read-only")
    return array * 2


def count_in_redis(url: str, calls_key: str, x: int, seconds: float) -> int:
    """Count the call in Redis (seen from every process), then take ``seconds`` to square ``x``."""
    import redis

    with redis.Redis.from_url(url) as client:
        client.incr(calls_key)
    time.sleep(seconds)
    return x * x


def hang_the_first_time(url: str, calls_key: str, x: int) -> int:
    """Hang for an hour on the first call anywhere; square ``x`` on later ones."""
    import redis

    with redis.Redis.from_url(url) as client:
        first = client.incr(calls_key) == 1
    if first:
        time.sleep(3600)
    return x * x


def run_cached_when_told(url: str, prefix: str, secret: str, call: tuple[Any, ...]) -> None:
    """A separate client process: its own Engine and RedisCache run ``call`` once told to go.

    It says it is ready by incrementing ``{prefix}:test:ready`` and starts when
    ``{prefix}:test:go`` exists; it writes its result to ``{prefix}:test:result:<pid>``.
    """
    import asyncio

    import redis

    import hybrid
    from adapters.redis import RedisCache

    async def main() -> None:
        async with (
            hybrid.Engine(1) as engine,
            RedisCache(url, prefix=prefix, secret=secret, lease_s=1.0, poll_s=0.1) as cache,
        ):
            await engine.run(abs, 0)
            with redis.Redis.from_url(url) as client:
                client.incr(f"{{{prefix}}}:test:ready")
                while not client.exists(f"{{{prefix}}}:test:go"):
                    time.sleep(0.005)
                result = await engine.run(*call, cache=cache)
                client.set(f"{{{prefix}}}:test:result:{os.getpid()}", repr(result))

    asyncio.run(main())


def flip(item: Any) -> Any:
    """Reverse a buffer (a ``bytes`` stays ``bytes``); anything else comes back as it is."""
    if isinstance(item, bytes | bytearray):
        return item[::-1]
    return item


def sleep_with_bytes(data: bytes) -> bytes:
    """The first call returns at once; later ones take 30 s."""
    if _state.setdefault("slept", False):
        time.sleep(30)
    _state["slept"] = True
    return data


def keep_view(view: memoryview) -> None:
    """Keep a mapped argument beyond its call (a user may)."""
    _state["view"] = view


def kept_view_digest() -> str:
    return hashlib.sha256(_state["view"]).hexdigest()


def make_bytes(size_bytes: int, fill: int) -> bytes:
    return bytes([fill]) * size_bytes


def keep_and_digest(data: bytes) -> str:
    """Keep a large argument beyond its call and return its digest; so does the next call."""
    _state.setdefault("kept", []).append(data)
    return hashlib.sha256(data).hexdigest()


def kept_digests() -> list[str]:
    return [hashlib.sha256(data).hexdigest() for data in _state.get("kept", [])]
