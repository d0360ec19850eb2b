"""What runs inside a worker process.

Each worker is the single process of its own ``ProcessPoolExecutor``. Its initializer
maps the result area, starts a heartbeat thread and a parent-death watch, ignores
SIGINT (the parent decides what Ctrl-C means) and runs the user's initializer.
The parent then sends batches of pickled tasks to :func:`run_batch`.
"""

from __future__ import annotations

import functools
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
from ._spec import WorkerSettings
from .isolation import isolate_worker

HEARTBEAT_INTERVAL_S = 0.05  # how often the worker beats until the parent asks otherwise
BEAT_INTERVAL_BOUNDS_S = (0.005, 1.0)  # whatever the parent asks, beats stay within these
PARENT_POLL_S = 0.2  # fallback parent-liveness poll where pidfd_open is missing

Outcome = tuple[bool, float, Any] | None  # (ok, seconds, value or error); None: skipped

_area: ResultArea | None = None
_init_error: BaseException | None = None


def init_worker(
    area_path: str,
    parent_pid: int,
    settings: WorkerSettings,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
) -> None:
    """Prepare this process to serve batches; never raises (errors surface in :func:`hello`)."""
    global _area, _init_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent_pid)
    _area = ResultArea(area_path, create=False)
    threading.Thread(target=_beat, args=(_area,), name="hybrid-heartbeat", daemon=True).start()
    try:
        isolate_worker(settings.cpu, settings.memory_limit_bytes, settings.nice)
        if initializer is not None:
            initializer(*initargs)
    except BaseException as exc:
        _init_error = exc


def hello() -> int:
    """Report this worker's pid, or raise what its initializer raised."""
    if _init_error is not None:
        raise _init_error
    return os.getpid()


def run_batch(parity: int, payloads: Sequence[bytes], counts: Sequence[int]) -> list[Outcome]:
    """Run pickled ``(fn, [args, ...])`` tasks in order; return every call's outcome.

    Each outcome is also written to the result area as the call finishes, numbered by
    call across the whole batch, so the parent can recover them if this process dies.
    When the area is full the batch stops early: the calls not in the returned list
    never started. ``None`` stands for a call skipped because it was cancelled.
    """
    area = _area
    assert area is not None, "worker used before init_worker"
    half = area.writer(parity)
    outcomes: list[Outcome] = []
    index = 0
    for payload, count in zip(payloads, counts, strict=True):
        failure: Outcome = None
        try:
            fn, calls = pickle.loads(payload)
        except BaseException as exc:
            # Every call of this task fails the same way (e.g. its module is missing here).
            calls, failure = [()] * count, error_outcome(0.0, exc)
        run: Callable[[tuple[Any, ...]], Outcome]
        if failure is not None:
            run = functools.partial(_same, failure)
        else:
            run = functools.partial(execute, fn)
        index, full = half.run_calls(calls, index, run, encode, outcomes)
        if full:
            return outcomes
    return outcomes


def _same(outcome: Outcome, _: tuple[Any, ...]) -> Outcome:
    return outcome


def execute(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, float, Any]:
    """Run one call: ``(True, seconds, value)`` or ``(False, seconds, error)``."""
    started = time.perf_counter()
    try:
        value = fn(*args)
    except BaseException as exc:
        return error_outcome(time.perf_counter() - started, exc)
    return True, time.perf_counter() - started, value


def encode(outcome: Outcome) -> tuple[Outcome, bytes]:
    """Pickle an outcome; a value that will not pickle becomes that call's error."""
    try:
        return outcome, pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        assert outcome is not None
        _, elapsed_s, value = outcome
        failed = error_outcome(elapsed_s, exc, unpicklable_result=type(value).__qualname__)
        return failed, pickle.dumps(failed, pickle.HIGHEST_PROTOCOL)


def error_outcome(
    elapsed_s: float, exc: BaseException, unpicklable_result: str = ""
) -> tuple[bool, float, Any]:
    """Describe an exception with its traceback text, in a form that always pickles."""
    text = "".join(traceback.format_exception(exc))
    try:
        exc_bytes: bytes | None = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except Exception:
        exc_bytes = None
    summary = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    return False, elapsed_s, (exc_bytes, summary, text, unpicklable_result)


def _beat(area: ResultArea) -> None:
    count = 0
    low_s, high_s = BEAT_INTERVAL_BOUNDS_S
    while True:
        count += 1
        area.beat(count, time.time_ns(), time.monotonic_ns())
        asked_ns = area.beat_interval_ns()
        interval_s = asked_ns / 1e9 if asked_ns else HEARTBEAT_INTERVAL_S
        time.sleep(min(high_s, max(low_s, interval_s)))


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
