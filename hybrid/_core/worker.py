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

from ..isolation import isolate_worker
from .area import ResultArea
from .spec import WorkerSettings
from .worker_loop import call_async, is_coroutine_function

HEARTBEAT_INTERVAL_S = 0.05  # how often the worker beats until the parent asks otherwise
BEAT_INTERVAL_BOUNDS_S = (0.005, 1.0)  # whatever the parent asks, beats stay within these
PARENT_POLL_S = 0.2  # fallback parent-liveness poll where pidfd_open is missing

Outcome = tuple[bool, float, Any] | None  # (ok, seconds, value or error); None: skipped
# Values of the calls reached, outcomes of those that failed or were skipped, task seconds.
BatchReport = tuple[list[Any], dict[int, Outcome], list[float]]

_area: ResultArea | None = None
_init_error: BaseException | None = None
# While a task runs: (its first call's id minus its first index in the batch, the batch's
# values). The running call's index is len(values), so no per-call bookkeeping is needed.
_running: tuple[int, list[Any]] | None = None


def init_worker(
    area_path: str,
    parent_pid: int,
    settings: WorkerSettings,
    initializer: Callable[..., object] | bytes | None,
    initargs: tuple[Any, ...],
) -> None:
    """Prepare this process to serve batches; never raises (errors surface in :func:`hello`).

    ``initializer`` comes pickled by value (bytes) when it cannot be imported by name.
    """
    global _area, _init_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent_pid)
    _area = ResultArea(area_path, create=False)
    threading.Thread(target=_beat, args=(_area,), name="hybrid-heartbeat", daemon=True).start()
    try:
        if settings.log_to is not None:
            from ..logs import install_worker_logging

            install_worker_logging(*settings.log_to)
        isolate_worker(settings.cpu, settings.memory_limit_bytes, settings.nice)
        if initializer is not None:
            init = pickle.loads(initializer) if isinstance(initializer, bytes) else initializer
            init(*initargs)
    except BaseException as exc:
        _init_error = exc


def hello() -> int:
    """Report this worker's pid, or raise what its initializer raised."""
    if _init_error is not None:
        raise _init_error
    return os.getpid()


def current_task_id() -> int | None:
    """The engine's id of the call running in this worker (None outside a call).

    Ids are numbered by the engine, one per call (``Task.id`` for a single call; a chunk
    of ``map`` numbers its calls from its task's id). Worker log records carry it.
    """
    running = _running
    if running is None:
        return None
    base, values = running
    return base + len(values)


def report_progress(done: float, total: float | None = None) -> None:
    """Tell the caller how far the running call has got (``done`` of ``total``).

    The caller sees it on its loop (``run(..., on_progress=...)``, ``handle.progress``)
    within about a tenth of a second, and the last report once the call returns. Only
    the latest report counts: reports faster than the parent looks replace each other.
    Outside a call in a worker it does nothing, so the function also runs in place.
    """
    area, call_id = _area, current_task_id()
    if area is not None and call_id is not None:
        area.report_progress(call_id, float(done), None if total is None else float(total))


def run_batch(
    parity: int,
    payloads: Sequence[bytes],
    counts: Sequence[int],
    first_ids: Sequence[int],
    profile: bool = False,
) -> BatchReport:
    """Run pickled ``(fn, calls, one_arg)`` tasks in order; report every call.

    Returns the values of the calls reached, in order, the outcomes of those that failed
    or were skipped (by index; their value is None), and each task's seconds. Each call
    is also recorded in the result area as it finishes, numbered across the batch, so
    the parent can recover them if this process dies. When the area is full the batch
    stops early: the calls past the returned values never started. ``first_ids`` are the
    engine's ids of each task's first call (:func:`current_task_id`). With ``profile``
    the batch runs under this worker's profiler (see ``worker_profile``).
    """
    if profile:
        from .worker_profile import profiled

        with profiled():
            return _run_batch(parity, payloads, counts, first_ids)
    return _run_batch(parity, payloads, counts, first_ids)


def _run_batch(
    parity: int, payloads: Sequence[bytes], counts: Sequence[int], first_ids: Sequence[int]
) -> BatchReport:
    global _running
    area = _area
    assert area is not None, "worker used before init_worker"
    half = area.writer(parity)
    values: list[Any] = []
    problems: dict[int, Outcome] = {}
    task_seconds: list[float] = []
    index = 0
    clock = time.perf_counter
    try:
        for payload, count, first_id in zip(payloads, counts, first_ids, strict=True):
            # The running call is the one after the values so far: no per-call bookkeeping.
            _running = (first_id - index, values)
            try:
                fn, calls, one_arg = pickle.loads(payload)
                if one_arg:
                    calls = zip(calls)
            except BaseException as exc:
                # Every call of this task fails the same way (e.g. its module is missing here).
                fn, calls = functools.partial(_reraise, exc), [()] * count
            else:
                if is_coroutine_function(fn):
                    fn = functools.partial(call_async, fn)
            started = clock()
            index, full = half.run_calls(fn, calls, index, values, problems, describe_error)
            task_seconds.append(clock() - started)
            if full:
                break
    finally:
        _running = None
        half.close()
    return values, problems, task_seconds


def _reraise(exc: BaseException) -> None:
    raise exc.with_traceback(None)


def describe_error(exc: BaseException, unpicklable_result: str = "") -> tuple[bool, float, Any]:
    """The outcome of a failed call, for the area and the parent."""
    return error_outcome(0.0, exc, unpicklable_result)


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
