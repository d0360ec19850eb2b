"""Functions the tests send to worker processes (importable by every start method)."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

_initialized: list[Any] = []


def square(x: int) -> int:
    return x * x


def pid_of(_: object = None) -> int:
    return os.getpid()


def sleep_then(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def sleep_and_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def spin(seconds: float) -> int:
    """Pure-Python CPU work for about ``seconds``; returns the loop count."""
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        count += 1
    return count


def exit_now(code: int = 3) -> None:
    os._exit(code)


def kill_self(sig: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), sig)


def segfault() -> None:
    ctypes.string_at(0)


class TaskFailure(ValueError):
    pass


def raise_value_error(message: str) -> None:
    raise TaskFailure(message)


class NeedsTwoArgs(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}-{b}")


def raise_unpicklable_exception() -> None:
    raise NeedsTwoArgs(1, 2)


def return_lambda() -> Any:
    return lambda: None


def record_call(path: str, value: int) -> int:
    """Append the value to a file, so the test can count how often each task really ran."""
    with open(path, "a") as handle:
        handle.write(f"{value}\n")
    return value


def record_then_crash_on(path: str, value: int, crash_value: int = -1) -> int:
    record_call(path, value)
    if value == crash_value:
        os._exit(9)
    return value


def crash_until_file_exists(path: str) -> str:
    """Crash on the first attempts; succeed once the marker file has been created twice."""
    marker = Path(path)
    attempts = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(attempts + 1))
    if attempts < 2:
        os._exit(5)
    return "ok"


def always_crash(path: str) -> None:
    with open(path, "a") as handle:
        handle.write("x\n")
    os._exit(6)


def remember_init(value: Any) -> None:
    _initialized.append((value, os.getpid()))


def initialized() -> list[Any]:
    return list(_initialized)


def failing_init() -> None:
    raise RuntimeError("the model file is missing")


def hang_forever() -> None:
    threading.Event().wait()


def raise_value_error_on(value: int) -> int:
    if value == 13:
        raise TaskFailure("thirteen")
    return value


def crash_twice_when_given(path: str) -> str:
    """Return "" at once for an empty path; else crash on the first two attempts."""
    if not path:
        return ""
    return crash_until_file_exists(path)


_warm_cache: dict[int, int] = {}


def cached_lookup(key: int) -> tuple[int, bool]:
    """Return (pid, whether this worker had the key warm already)."""
    warm = key in _warm_cache
    _warm_cache[key] = key
    return os.getpid(), warm


def affinity_of(_: object = None) -> list[int]:
    return sorted(os.sched_getaffinity(0))


def niceness(_: object = None) -> int:
    return os.nice(0)


def allocate(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def sleep_then_record(seconds: float, path: str, value: int) -> int:
    time.sleep(seconds)
    return record_call(path, value)


_kept: list[bytearray] = []


def grow_and_keep(megabytes: int) -> int:
    """Leak memory on purpose (it stays referenced), then report this worker's pid."""
    _kept.append(bytearray(megabytes * 1024 * 1024))
    time.sleep(0.6)  # long enough for the pool's watch to see the growth
    return os.getpid()


def hold_the_gil(n: int) -> int:
    """A long call in C that never releases the GIL: the heartbeat thread cannot run."""
    return sum(range(n))


def grow_quickly(megabytes: int) -> int:
    """Leak memory fast (no pause), then report this worker's pid."""
    _kept.append(bytearray(megabytes * 1024 * 1024))
    return os.getpid()


def checksum_and_echo(data: bytes) -> tuple[int, bytes]:
    """Read a large buffer and send one back (both cross through shared memory)."""
    return sum(data[::4096]), bytes(data[: len(data) // 2])


def crash_with(data: bytes) -> None:
    os._exit(4)


def stuck_holding_the_gil(seconds: int) -> None:
    """A C call that blocks without releasing the GIL, like a deadlock inside an extension:
    the whole process stops, heartbeat thread included, and burns no CPU."""
    ctypes.PyDLL(None).sleep(seconds)


def live_segments_of(data: bytes, owner_pid: int) -> tuple[int, int]:
    """The size of ``data``, and how many shared-memory segments its owner holds now."""
    from hybrid.shared import leftover_segments

    return len(data), len(leftover_segments(owner_pid))


def fail_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(f"{x} is odd")
    return x


def hot_spot_of_the_profile(n: int) -> int:
    """A function a profile must name: it takes nearly all of its caller's time."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
