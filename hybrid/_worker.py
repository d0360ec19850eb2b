"""What runs inside a worker process.

Each worker is the single process of its own ``ProcessPoolExecutor``. Its initializer
maps the result area, starts a heartbeat thread and a parent-death watch, ignores
SIGINT (the parent decides what Ctrl-C means) and runs the user's initializer.
The parent then sends batches of pickled tasks to :func:`run_batch`.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ._area import ResultArea

HEARTBEAT_INTERVAL_S = 0.05  # how often the worker stamps its liveness into the area
PARENT_POLL_S = 0.2  # fallback parent-liveness poll where pidfd_open is missing

_area: ResultArea | None = None
_init_error: BaseException | None = None


def init_worker(
    area_path: str,
    parent_pid: int,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
) -> None:
    """Prepare this process to serve batches; never raises (errors surface in :func:`hello`)."""
    global _area, _init_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent_pid)
    _area = ResultArea(area_path, create=False)
    threading.Thread(target=_beat, args=(_area,), name="hybrid-heartbeat", daemon=True).start()
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            _init_error = exc


def hello() -> int:
    """Report this worker's pid, or raise what its initializer raised."""
    if _init_error is not None:
        raise _init_error
    return os.getpid()


def run_batch(parity: int, payloads: Sequence[bytes]) -> tuple[int, bytes | None]:
    """Run pickled ``(fn, args)`` tasks in order, appending each result record to the area.

    Returns ``(n, tail)``: the first ``n`` records are in the area; when the area filled
    up, ``tail`` is the record of task ``n`` and the tasks after it never started.
    """
    area = _area
    assert area is not None, "worker used before init_worker"
    for index, payload in enumerate(payloads):
        if area.is_skipped(parity, index):
            record = SKIPPED_RECORD
        else:
            area.mark_started(parity, index)
            record = execute(payload)
        if not area.append(parity, record):
            return index, record
    return len(payloads), None


SKIPPED_RECORD = pickle.dumps(None)


def execute(payload: bytes) -> bytes:
    """Run one task and encode its outcome as ``(ok, seconds, value_or_error)``."""
    started = time.perf_counter()
    try:
        fn, args = pickle.loads(payload)
        value = fn(*args)
    except BaseException as exc:
        return _error_record(time.perf_counter() - started, exc)
    elapsed_s = time.perf_counter() - started
    try:
        return pickle.dumps((True, elapsed_s, value), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return _error_record(elapsed_s, exc, unpicklable_result=type(value).__qualname__)


def _error_record(elapsed_s: float, exc: BaseException, unpicklable_result: str = "") -> bytes:
    """Encode an exception with its traceback text, even when it will not pickle."""
    text = "".join(traceback.format_exception(exc))
    try:
        exc_bytes: bytes | None = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except Exception:
        exc_bytes = None
    summary = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    error = (exc_bytes, summary, text, unpicklable_result)
    return pickle.dumps((False, elapsed_s, error), pickle.HIGHEST_PROTOCOL)


def _beat(area: ResultArea) -> None:
    count = 0
    while True:
        count += 1
        area.beat(count, time.time_ns(), time.monotonic_ns())
        time.sleep(HEARTBEAT_INTERVAL_S)


def _watch_parent(parent_pid: int) -> None:
    """Exit at once when the engine's process dies, however it died (no orphans)."""
    try:
        pidfd = os.pidfd_open(parent_pid)
    except (AttributeError, OSError):
        target: Callable[[], None] = lambda: _poll_parent(parent_pid)  # noqa: E731
    else:
        target = lambda: _wait_pidfd(pidfd)  # noqa: E731
    threading.Thread(target=target, name="hybrid-parent-watch", daemon=True).start()


def _wait_pidfd(pidfd: int) -> None:
    select.select([pidfd], [], [])
    os._exit(70)


def _poll_parent(parent_pid: int) -> None:
    while True:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(70)
        except PermissionError:
            pass
        time.sleep(PARENT_POLL_S)
