"""Loop-lag watch: how late the event loop runs its callbacks, and what blocked it.

The watch sleeps ``interval_s`` over and over and measures how late each wake-up comes:
that lateness is the loop's lag. A side thread samples the loop thread's stack when a
wake-up is overdue by ``warn_after_s``, so the warning can name the code that held the
loop, on asyncio and uvloop alike. In asyncio debug mode (``loop.set_debug(True)``) the
warning also quotes asyncio's own slow-callback report (the handle and where it was
created).

A failure detector should read :meth:`LoopLagWatch.stalled_s` and
:attr:`LoopLagWatch.max_lag_s` before convicting a silent peer: heartbeats that this
process could not read because its own loop was stuck prove nothing about the peer::

    async with LoopLagWatch() as watch:
        ...
        if silence_s - watch.max_lag_s > suspect_after_s:
            suspect(peer)
"""

from __future__ import annotations

import asyncio
import logging
import sys
import sysconfig
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, TracebackType

from . import ticks

logger = logging.getLogger("hybrid.lag")

ASYNCIO_SLOW_CALLBACK_MESSAGE = "Executing %s took %.3f seconds"  # asyncio/base_events.py
STACK_FRAMES_KEPT = 8  # innermost frames quoted in a warning
# Code under these is a library's: a stall is blamed on the application frame that called it.
LIBRARY_DIRS = tuple(
    {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
)


@dataclass(frozen=True)
class Stall:
    """One time the loop was blocked past the warning threshold.

    Attributes:
        lag_s: how late the watch's wake-up came, in seconds.
        where: the innermost frame of the application's own code (not the standard
            library's or an installed package's) on the loop thread while it was blocked,
            as ``"path:line in function"``; the innermost frame of all if there is none;
            ``""`` when no sample was taken in time.
        stack: the loop thread's innermost frames at that moment, outermost first.
        slow_callback: asyncio's debug-mode description of the slow callback, if any.
    """

    lag_s: float
    where: str
    stack: tuple[str, ...]
    slow_callback: str

    def describe(self) -> str:
        parts = [f"event loop blocked for {self.lag_s:.3f} s"]
        if self.where:
            parts.append(f"in {self.where}")
        if self.slow_callback:
            parts.append(f"(asyncio: {self.slow_callback})")
        return " ".join(parts)


class LoopLagWatch:
    """Measures the running loop's lag continuously and warns when something blocks it.

    Args:
        interval_s: time between measurements (each costs the loop a wake-up, shared
            with the engine's watch on the grid of :mod:`hybrid.ticks`, and a side
            thread another).
        warn_after_s: lag past which a :class:`Stall` is recorded and a warning logged on
            the ``hybrid.lag`` logger.
        window_s: span over which :attr:`max_lag_s` is taken.
        on_sample: called on the loop with every measured lag, in seconds (e.g. to feed
            a histogram).

    Use it as ``async with LoopLagWatch() as watch`` or call :meth:`start` and
    :meth:`stop` from the loop it watches.
    """

    def __init__(
        self,
        *,
        interval_s: float = 0.1,
        warn_after_s: float = 0.1,
        window_s: float = 10.0,
        on_sample: Callable[[float], None] | None = None,
    ) -> None:
        if interval_s <= 0 or warn_after_s <= 0 or window_s <= 0:
            raise ValueError("interval_s, warn_after_s and window_s must be > 0")
        self.interval_s = interval_s
        self.warn_after_s = warn_after_s
        self.window_s = window_s
        self.on_sample = on_sample
        self.lag_s = 0.0
        self.samples = 0
        self.stalls = 0
        self.last_stall: Stall | None = None
        self._recent: deque[tuple[float, float]] = deque()  # (taken at, lag_s)
        self._due_at = 0.0  # time.monotonic() by which the next wake-up should come
        self._tick = 0
        self._sampled: tuple[int, tuple[str, ...]] | None = None  # (tick, stack)
        self._slow_callback = ""
        self._task: asyncio.Task[None] | None = None
        self._sampler: threading.Thread | None = None
        self._stopping = threading.Event()
        self._debug_filter = _SlowCallbackFilter(self)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def max_lag_s(self) -> float:
        """The largest lag measured in the last ``window_s`` seconds, or the current stall."""
        self._forget_old(time.monotonic())
        recent = max((lag for _, lag in self._recent), default=0.0)
        return max(recent, self.stalled_s())

    def stalled_s(self) -> float:
        """How overdue the loop is right now (0.0 when on time); safe from any thread."""
        if not self.running:
            return 0.0
        return max(0.0, time.monotonic() - self._due_at)

    def start(self) -> None:
        """Start watching the running loop; a second call does nothing."""
        if self.running:
            return
        loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._due_at = time.monotonic() + self.interval_s
        self._task = loop.create_task(self._measure(), name="hybrid-lag-watch")
        self._sampler = threading.Thread(
            target=self._sample_stalls,
            args=(threading.get_ident(),),
            name="hybrid-lag-sampler",
            daemon=True,
        )
        self._sampler.start()
        logging.getLogger("asyncio").addFilter(self._debug_filter)

    async def stop(self) -> None:
        """Stop watching and join the sampler thread."""
        logging.getLogger("asyncio").removeFilter(self._debug_filter)
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._sampler is not None:
            await asyncio.to_thread(self._sampler.join)
            self._sampler = None

    async def __aenter__(self) -> LoopLagWatch:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # On the shared grid: the engine's own watch wakes the loop at the same moment.
            delay_s = ticks.until_next(loop.time(), self.interval_s)
            self._due_at = time.monotonic() + delay_s
            await asyncio.sleep(delay_s)
            now = time.monotonic()
            self._record(max(0.0, now - self._due_at), now)

    def _record(self, lag_s: float, now: float) -> None:
        self.lag_s = lag_s
        self.samples += 1
        self._recent.append((now, lag_s))
        self._forget_old(now)
        if lag_s >= self.warn_after_s:
            self._report_stall(lag_s)
        self._tick += 1
        self._slow_callback = ""
        if self.on_sample is not None:
            self.on_sample(lag_s)

    def _report_stall(self, lag_s: float) -> None:
        sampled = self._sampled
        stack = sampled[1] if sampled is not None and sampled[0] == self._tick else ()
        stall = Stall(lag_s, _culprit(stack), stack, self._slow_callback)
        self.stalls += 1
        self.last_stall = stall
        logger.warning("%s", stall.describe(), extra={"stall": stall})

    def _forget_old(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self.window_s:
            self._recent.popleft()

    def _sample_stalls(self, loop_thread: int) -> None:
        """Side thread: grab the loop thread's stack once per overdue wake-up.

        It sleeps until the pending wake-up would be overdue by half the threshold. On a
        healthy loop that wake-up has come by then, so the thread finds the next one
        pending and sleeps again: one wake-up per measurement (it takes the GIL).
        """
        recheck_s = min(self.interval_s, self.warn_after_s) / 2  # while the loop is stuck
        while True:
            wait_s = self._due_at + self.warn_after_s / 2 - time.monotonic()
            if wait_s <= 0:
                self._sample_once(loop_thread)
                wait_s = recheck_s
            if self._stopping.wait(wait_s):
                return

    def _sample_once(self, loop_thread: int) -> None:
        """Keep the loop thread's stack, unless this overdue wake-up was sampled already."""
        tick = self._tick
        if self._sampled is not None and self._sampled[0] == tick:
            return
        frame = sys._current_frames().get(loop_thread)
        if frame is not None:
            self._sampled = (tick, _format_stack(frame))

    def _note_slow_callback(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 2:
            self._slow_callback = f"{args[0]} took {args[1]:.3f} s"


class _SlowCallbackFilter(logging.Filter):
    """Reads asyncio's debug-mode slow-callback warnings without suppressing them."""

    def __init__(self, watch: LoopLagWatch) -> None:
        super().__init__()
        self._watch = watch

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == ASYNCIO_SLOW_CALLBACK_MESSAGE:
            self._watch._note_slow_callback(record)
        return True


def _format_stack(frame: FrameType) -> tuple[str, ...]:
    frames = traceback.extract_stack(frame)[-STACK_FRAMES_KEPT:]
    return tuple(f"{entry.filename}:{entry.lineno} in {entry.name}" for entry in frames)


def _culprit(stack: tuple[str, ...]) -> str:
    """The innermost frame in the application's code, else the innermost frame."""
    for entry in reversed(stack):
        if not entry.startswith(LIBRARY_DIRS):
            return entry
    return stack[-1] if stack else ""
